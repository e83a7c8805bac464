"""Token counts when upstream reports none (Poe's bot protocol never does).

An estimate, and documented as one: about four characters of English per token, the rule of
thumb OpenAI itself gives. Running a real tokenizer would need model files the proxy does not
have (and each Poe bot tokenizes differently anyway).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4  # role and separators, as in OpenAI's own counting guide


def estimate_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_prompt_tokens(texts: Iterable[str]) -> int:
    return sum(estimate_tokens(t) + MESSAGE_OVERHEAD_TOKENS for t in texts)


def usage_dict(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def max_chars_for_tokens(max_tokens: int | None) -> int | None:
    """The character budget that ``estimate_tokens`` counts as ``max_tokens``."""
    return None if max_tokens is None else max_tokens * CHARS_PER_TOKEN
