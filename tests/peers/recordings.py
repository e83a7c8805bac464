"""Poe's own recorded answers, trimmed to what the tests read: from Poe's AI SDK provider
(``poe-platform/ai-sdk-provider-poe``, folder ``.snapshots/``), where each file holds a request
to Poe's live API (March 2026) and its answer. The recording's name stands beside each.

The stand-in Poe (``tests/peers/openai_compat.py``) answers a chat for the model
``recorded-<name>`` with that recording: as it is when not streamed, and as a stream built from
it when streamed. Poe documents no stream of these answers, so the stream is assumed to be
OpenAI's chunk format: the first chunk carries the role; then the reasoning (both of Poe's
fields in one delta), the content, the tool calls and any other field, text cut in pieces of 12
characters; then the finish reason, then a chunk of the usage alone.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

GROK_REASONING = (
    'First, the user asked, "What is 7 * 8?" This is a simple multiplication question. 7 multiplied by 8 '
    "equals 56."
)
GEMINI_REASONING = (
    "**Analyzing the Requirements**\n\nI've started by internalizing the project's core need: a Python "
    "function to locate the Longest Increasing Subsequence within an integer array, as requested.\n\n\n"
)
THOUGHT_SIGNATURE = "CiEBjz1rX/ZGX2IDT3g2q9WRFmJM3usdKzgx83KJ4Kdxnk0="

RECORDINGS: dict[str, dict[str, Any]] = {
    # v1-chat-completions-grok-3-mini-0bb4f1ea5869 ("grok-3-mini produces reasoning with effort")
    "grok-3-mini-reasoning": {
        "id": "chatcmpl-b418182be09b40cc3469c60b",
        "object": "chat.completion",
        "created": 1774478882,
        "model": "grok-3-mini",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "7 multiplied by 8 equals 56. \U0001f60a",
                    "reasoning_content": GROK_REASONING,
                    "reasoning": GROK_REASONING,
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "completion_tokens": 11,
            "prompt_tokens": 15,
            "total_tokens": 26,
            "completion_tokens_details": {
                "accepted_prediction_tokens": None,
                "audio_tokens": None,
                "reasoning_tokens": 178,
                "rejected_prediction_tokens": None,
            },
            "prompt_tokens_details": {"audio_tokens": None, "cached_tokens": 5},
        },
    },
    # v1-chat-completions-gemini-3-flash-7c2fb55e2b88 ("handles tool calling with gemini-3-flash")
    "gemini-3-flash-tool-call": {
        "id": "chatcmpl-539533973c123717786d5d48",
        "object": "chat.completion",
        "created": 1770392935,
        "model": "gemini-3-flash",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": "tool_getWeather_2VuMDSSYYR1xYo5Y4itp",
                            "type": "function",
                            "function": {"name": "getWeather", "arguments": '{"location": "San Francisco"}'},
                            "extra_content": {
                                "google": {
                                    "thought_signature": "CiEBjz1rX/ZGX2IDT3g2q9WRFmJM3usdKzgx83KJ4Kdxnk0="
                                }
                            },
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "completion_tokens": 9,
            "prompt_tokens": 32,
            "total_tokens": 41,
            "completion_tokens_details": None,
            "prompt_tokens_details": None,
        },
    },
    # v1-chat-completions-gemini-3-pro-4984d0d34ccd ("supports thinking_level and web_search with
    # gemini-3-pro"): the answer's first sentence and the reasoning's first paragraph
    "gemini-3-pro-reasoning": {
        "id": "chatcmpl-96900ab22b5722d30b746405",
        "object": "chat.completion",
        "created": 1770392830,
        "model": "gemini-3-pro",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Here are the two solutions for finding the length of the Longest Increasing "
                    "Subsequence (LIS) in Python.",
                    "reasoning_content": GEMINI_REASONING,
                    "reasoning": GEMINI_REASONING,
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "completion_tokens": 1338,
            "prompt_tokens": 30,
            "total_tokens": 1368,
            "completion_tokens_details": {
                "accepted_prediction_tokens": None,
                "audio_tokens": None,
                "reasoning_tokens": 148,
                "rejected_prediction_tokens": None,
            },
            "prompt_tokens_details": None,
        },
    },
}

PIECE = 12


def recorded(name: str) -> dict[str, Any]:
    """The recorded answer ``name`` (a copy: tests may change it)."""
    return copy.deepcopy(RECORDINGS[name])


def recorded_chunks(name: str) -> Iterator[dict[str, Any]]:
    """The recording as a stream of chat chunks (the shape the module's docstring assumes)."""
    answer = recorded(name)
    [choice] = answer["choices"]
    top = {k: answer[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**top, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    message = choice["message"]
    yield chunk({"role": message.pop("role")})
    reasoning = message.pop("reasoning_content", None)
    message.pop("reasoning", None)
    for start in range(0, len(reasoning or ""), PIECE):
        piece = reasoning[start : start + PIECE]
        yield chunk({"reasoning_content": piece, "reasoning": piece})
    for field, value in message.items():
        if field == "tool_calls":
            for index, call in enumerate(value):
                yield chunk({"tool_calls": [{"index": index, **call}]})
        elif isinstance(value, str):
            for start in range(0, len(value), PIECE):
                yield chunk({field: value[start : start + PIECE]})
        else:
            yield chunk({field: value})
    yield chunk({}, choice["finish_reason"])
    yield {**top, "choices": [], "usage": answer["usage"]}
