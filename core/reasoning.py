"""Reasoning controls in: what a client asks for, as the parameter each Poe model declares.

Clients speak one of two words: an effort (chat's ``reasoning_effort``, Responses'
``reasoning.effort``: ``none``, ``minimal``, ``low``, ``medium``, ``high``, ``xhigh``) or a budget
of tokens (Messages' ``thinking.budget_tokens``). Poe's models each declare their own, in the
``parameters`` of their catalog entry (JSON Schema): ``reasoning_effort``, ``thinking_level``
(an enum), ``thinking_budget`` (tokens), ``enable_thinking`` (on or off). ``reasoning_parameters``
turns the one into the other; a model that declares none of them gets the effort as it came.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The parameters by which Poe's models take reasoning controls, besides ``reasoning_effort``.
MODEL_OWN_PARAMETERS = frozenset({"thinking_level", "thinking_budget", "enable_thinking"})
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
# Tokens of thinking for each effort, and the effort a budget reads as (its nearest below).
BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}


def declared(entry: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """The parameters a catalog entry declares, by name, each with its JSON Schema (an object
    schema's ``properties``, or a map of names to schemas)."""
    parameters = entry.get("parameters") if isinstance(entry, Mapping) else None
    if not isinstance(parameters, Mapping):
        return {}
    properties = parameters.get("properties") if parameters.get("type") == "object" else parameters
    if not isinstance(properties, Mapping):
        return {}
    return {name: schema for name, schema in properties.items() if isinstance(schema, Mapping)}


def effort_of(budget: int) -> str:
    """The effort a budget of thinking tokens reads as."""
    return max((effort for effort, tokens in BUDGETS.items() if tokens <= budget), key=BUDGETS.__getitem__)


def reasoning_parameters(
    entry: Mapping[str, Any] | None, *, effort: str | None = None, budget: int | None = None
) -> dict[str, Any]:
    """The bot parameters that ask the model of ``entry`` for ``effort`` (or ``budget`` tokens)."""
    if effort is None and budget is None:
        return {}
    effort = effort or effort_of(budget or 0)
    schemas = declared(entry)
    if "reasoning_effort" in schemas:
        return {"reasoning_effort": _nearest(schemas["reasoning_effort"], effort)}
    if "thinking_level" in schemas:
        return {"thinking_level": _nearest(schemas["thinking_level"], effort)}
    if "thinking_budget" in schemas:
        tokens = budget if budget is not None else BUDGETS.get(effort, BUDGETS["medium"])
        return {"thinking_budget": _within(schemas["thinking_budget"], tokens)}
    if "enable_thinking" in schemas:
        return {"enable_thinking": effort not in ("none", "minimal")}
    return {"reasoning_effort": effort}


def _nearest(schema: Mapping[str, Any], effort: str) -> str:
    """``effort``, or the value of the schema's enum nearest it on the scale of efforts."""
    choices = [c for c in schema.get("enum") or () if isinstance(c, str)]
    if not choices or effort in choices or effort not in EFFORTS:
        return effort
    rank = EFFORTS.index(effort)
    known = [c for c in choices if c in EFFORTS]
    if not known:
        return effort
    return min(known, key=lambda c: (abs(EFFORTS.index(c) - rank), -EFFORTS.index(c)))


def _within(schema: Mapping[str, Any], tokens: int) -> int:
    low, high = schema.get("minimum"), schema.get("maximum")
    if isinstance(high, int) and tokens > high:
        tokens = high
    if isinstance(low, int) and tokens < low:
        tokens = low
    return tokens
