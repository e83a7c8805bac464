"""``core.reasoning``: an effort or a budget, as the parameter each model declares."""

from __future__ import annotations

from typing import Any

import pytest

from core.reasoning import effort_of, reasoning_parameters

ENUM = {"type": "string", "enum": ["low", "high"]}


@pytest.mark.parametrize(
    ("parameters", "effort", "budget", "sent"),
    [
        ({"reasoning_effort": {"type": "string"}}, "high", None, {"reasoning_effort": "high"}),
        (
            {"reasoning_effort": {"type": "string", "enum": ["low", "medium", "high"]}},
            "xhigh",
            None,
            {"reasoning_effort": "high"},
        ),
        ({"thinking_level": ENUM}, "medium", None, {"thinking_level": "high"}),  # between: the higher
        ({"thinking_level": ENUM}, "minimal", None, {"thinking_level": "low"}),
        (
            {"thinking_budget": {"type": "integer", "maximum": 16000}},
            "high",
            None,
            {"thinking_budget": 16000},
        ),
        ({"thinking_budget": {"type": "integer", "minimum": 128}}, None, 5000, {"thinking_budget": 5000}),
        ({"enable_thinking": {"type": "boolean"}}, "low", None, {"enable_thinking": True}),
        ({"enable_thinking": {"type": "boolean"}}, "none", None, {"enable_thinking": False}),
        (
            {"type": "object", "properties": {"enable_thinking": {"type": "boolean"}}},
            None,
            0,
            {"enable_thinking": False},
        ),
        ({}, "high", None, {"reasoning_effort": "high"}),  # declares nothing: as it came
        (None, None, 10_000, {"reasoning_effort": "medium"}),
    ],
)
def test_each_models_own_parameter(
    parameters: Any, effort: str | None, budget: int | None, sent: dict[str, Any]
) -> None:
    assert reasoning_parameters({"id": "m", "parameters": parameters}, effort=effort, budget=budget) == sent


def test_a_budget_reads_as_the_effort_below_it() -> None:
    assert [effort_of(b) for b in (0, 600, 1024, 9000, 30000, 10**6)] == [
        "none",
        "minimal",
        "low",
        "medium",
        "high",
        "xhigh",
    ]
    assert reasoning_parameters({"parameters": {}}) == {}
