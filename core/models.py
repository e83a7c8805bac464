"""Model names: what a client asks for, and which Poe bot answers.

OpenAI tools hard-code OpenAI (and Anthropic) model ids. Poe names its bots differently but
matches them case-insensitively, so we only need a small table for the names that differ,
plus whatever the operator adds with ``MODEL_ALIASES``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidRequestError, NotFoundError, UpstreamError

# OpenAI / Anthropic API ids -> Poe bot names. Keys are lower-case, with date suffixes removed.
DEFAULT_ALIASES: Mapping[str, str] = {
    "gpt-3.5-turbo": "GPT-3.5-Turbo",
    "gpt-4": "GPT-4-Classic",
    "gpt-4-turbo": "GPT-4-Turbo",
    "gpt-4o": "GPT-4o",
    "chatgpt-4o-latest": "ChatGPT-4o-Latest",
    "gpt-4o-mini": "GPT-4o-Mini",
    "gpt-4.1": "GPT-4.1",
    "gpt-4.1-mini": "GPT-4.1-Mini",
    "gpt-4.1-nano": "GPT-4.1-Nano",
    "gpt-5": "GPT-5",
    "gpt-5-mini": "GPT-5-mini",
    "gpt-5-nano": "GPT-5-nano",
    "o1": "o1",
    "o1-mini": "o1-mini",
    "o3": "o3",
    "o3-mini": "o3-mini",
    "o4-mini": "o4-mini",
    "claude-3-haiku": "Claude-Haiku-3",
    "claude-3-opus": "Claude-Opus-3",
    "claude-3-5-haiku": "Claude-Haiku-3.5",
    "claude-3-5-sonnet": "Claude-Sonnet-3.5",
    "claude-3-7-sonnet": "Claude-Sonnet-3.7",
    "claude-sonnet-4": "Claude-Sonnet-4",
    "claude-opus-4": "Claude-Opus-4",
    "claude-opus-4-1": "Claude-Opus-4.1",
    "claude-sonnet-4-5": "Claude-Sonnet-4.5",
    "claude-opus-4-5": "Claude-Opus-4.5",
    "claude-haiku-4-5": "Claude-Haiku-4.5",
    "gemini-1.5-pro": "Gemini-1.5-Pro",
    "gemini-2.0-flash": "Gemini-2.0-Flash",
    "gemini-2.5-pro": "Gemini-2.5-Pro",
    "gemini-2.5-flash": "Gemini-2.5-Flash",
    # Images and speech (``/v1/images/*``, ``/v1/audio/speech``). Poe has no DALL-E 2: DALL-E 3
    # answers for it. OpenAI's voices are not on Poe: ElevenLabs' bots read the text instead.
    "gpt-image-1": "GPT-Image-1",
    "dall-e-3": "DALL-E-3",
    "dall-e-2": "DALL-E-3",
    "tts-1": "ElevenLabs-v2.5-Turbo",
    "tts-1-hd": "ElevenLabs-v3",
    "gpt-4o-mini-tts": "ElevenLabs-v3",
}

# "-20241022", "-2024-08-06", "-latest" (but not "chatgpt-4o-latest", which is a name of its own).
_DATE_SUFFIX = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2}|latest)$")
_BOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def resolve_bot_name(
    model: str,
    aliases: Mapping[str, str] | None = None,
    *,
    param: str = "model",
) -> str:
    """The Poe bot that serves ``model``.

    Operator aliases win over the built-in table; a name in neither is taken as a Poe bot name.
    The result is safe to put in a URL path.
    """
    key = model.strip().lower()
    for table in (aliases or {}, DEFAULT_ALIASES):
        if key in table:
            return table[key]
    undated = _DATE_SUFFIX.sub("", key)
    for table in (aliases or {}, DEFAULT_ALIASES):
        if undated in table:
            return table[undated]
    name = model.strip()
    if not _BOT_NAME.match(name):
        raise InvalidRequestError(
            f"{model!r} is not a valid model name: use letters, digits, '.', '_' and '-'",
            param=param,
            code="invalid_model",
        )
    return name


def openai_model_list(upstream: Any, *, created: int) -> dict[str, Any]:
    """Poe's ``/v1/models`` answer in OpenAI's exact list shape, every field Poe gives a model
    kept as it came (``pricing``, ``context_window``, ``parameters``, ``architecture``,
    ``reasoning``, ...): the proxy fills only OpenAI's four where Poe leaves a gap (``created``
    with the time it was read)."""
    items = upstream.get("data") if isinstance(upstream, Mapping) else upstream
    if not isinstance(items, list):
        raise UpstreamError("Poe's model list is not a list.", code="upstream_malformed")
    data = []
    for item in items:
        model_id = item.get("id") if isinstance(item, Mapping) else item
        if not isinstance(model_id, str) or not model_id:
            continue
        said = dict(item) if isinstance(item, Mapping) else {}
        stamp, owner = said.get("created"), said.get("owned_by")
        data.append(
            {
                **said,
                "id": model_id,
                "object": "model",
                "created": stamp if isinstance(stamp, int) and not isinstance(stamp, bool) else created,
                "owned_by": owner if isinstance(owner, str) and owner else "poe",
            }
        )
    return {"object": "list", "data": data}


def find_model(
    model_list: Mapping[str, Any], model: str, aliases: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One entry of ``model_list`` by id, case-insensitively, aliases included; else 404.

    The entry keeps Poe's spelling of the id, which is the name that identifies the bot.
    """
    wanted = {model.lower()}
    with contextlib.suppress(InvalidRequestError):
        wanted.add(resolve_bot_name(model, aliases).lower())
    for entry in model_list["data"]:
        if entry["id"].lower() in wanted:
            return dict(entry)
    raise NotFoundError(f"The model '{model}' does not exist on Poe.", param="model", code="model_not_found")


@dataclass(slots=True)
class ModelListCache:
    """The model list, kept for ``ttl`` seconds; the caller passes the clock in.

    A stale entry is still returned by ``fallback`` so that an upstream failure with a warm
    cache can be answered from it.
    """

    ttl: float
    _value: dict[str, Any] | None = None
    _stored_at: float = 0.0

    def get(self, now: float) -> dict[str, Any] | None:
        if self._value is not None and now - self._stored_at < self.ttl:
            return self._value
        return None

    def put(self, value: dict[str, Any], now: float) -> None:
        self._value, self._stored_at = value, now

    def fallback(self) -> dict[str, Any] | None:
        return self._value
