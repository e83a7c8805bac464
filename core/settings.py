"""Settings, parsed from a plain mapping so that every adapter can pass ``os.environ`` in.

Nothing here reads the environment itself: ``Settings.from_mapping(os.environ)`` is the only
bridge, and it lives in the adapters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Backend = Literal["bot", "openai"]

DEFAULT_POE_BASE_URL = "https://api.poe.com"
DEFAULT_POE_UPLOAD_URL = "https://www.quora.com/poe_api/"
DEFAULT_CHAT_MODEL = "claude-opus-4.5"
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
DEFAULT_IMAGE_MODEL = "GPT-Image-1"
DEFAULT_SPEECH_MODEL = "tts-1"


LOG_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}  # Python's


class ConfigError(ValueError):
    """A setting has a value the proxy cannot run with; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the proxy can be told. Field docs are the README's settings table."""

    poe_base_url: str = DEFAULT_POE_BASE_URL
    backend: Backend = "bot"
    default_chat_model: str = DEFAULT_CHAT_MODEL
    default_embedding_model: str = DEFAULT_EMBEDDING_MODEL
    default_image_model: str = DEFAULT_IMAGE_MODEL
    default_speech_model: str = DEFAULT_SPEECH_MODEL
    connect_timeout: float = 10.0
    read_timeout: float = 120.0  # longest silence between two upstream bytes
    body_timeout: float = 30.0  # the whole request body must arrive within this
    file_timeout: float = 60.0  # the whole of a bot's file, fetched by the proxy
    max_body_bytes: int = 10 * 1024 * 1024
    max_media_bytes: int = 7 * 1024 * 1024  # decoded; its base64 still fits in the body limit
    max_file_bytes: int = 20 * 1024 * 1024  # a file a bot answered with, fetched by the proxy
    max_n: int = 8
    # A Responses conversation (previous_response_id's chain) as sent to Poe, in bytes of JSON.
    max_conversation_bytes: int = 16 * 1024 * 1024
    poe_api_key: str | None = None
    access_tokens: tuple[str, ...] = ()
    allow_open_relay: bool = False
    poe_upload_url: str = DEFAULT_POE_UPLOAD_URL
    model_aliases: Mapping[str, str] = field(default_factory=dict)
    models_cache_ttl: float = 300.0
    embedding_batch_size: int = 256
    log_level: str = "INFO"
    responses_ttl: float = 30 * 86400  # how long a stored response is kept (OpenAI: 30 days)

    @property
    def owner_mode(self) -> bool:
        """The server holds the Poe key; clients prove themselves with an access token."""
        return self.poe_api_key is not None

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from environment-like strings. Unknown keys are ignored."""

        def text(name: str, default: str) -> str:
            value = env.get(name, "").strip()
            return value or default

        def number(name: str, default: float, *, minimum: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {raw!r}") from None
            if not value >= minimum:
                raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
            return value

        backend = text("POE_BACKEND", "bot").lower()
        log_level = text("LOG_LEVEL", "INFO").upper()
        if log_level not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
        if backend not in ("bot", "openai"):
            raise ConfigError(f"POE_BACKEND must be 'bot' or 'openai', got {backend!r}")

        base_url = text("POE_BASE_URL", DEFAULT_POE_BASE_URL).rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"POE_BASE_URL must be an http(s) URL, got {base_url!r}")
        upload_url = text("POE_UPLOAD_URL", DEFAULT_POE_UPLOAD_URL)
        if not upload_url.startswith(("http://", "https://")):
            raise ConfigError(f"POE_UPLOAD_URL must be an http(s) URL, got {upload_url!r}")

        tokens = tuple(t.strip() for t in env.get("PROXY_ACCESS_TOKEN", "").split(",") if t.strip())
        poe_api_key = env.get("POE_API_KEY", "").strip() or None
        if poe_api_key is not None and not (poe_api_key.isascii() and poe_api_key.isprintable()):
            raise ConfigError("POE_API_KEY must be printable ASCII, as Poe's keys are")
        allow_open_relay = text("ALLOW_OPEN_RELAY", "").lower() in ("1", "true", "yes")
        if poe_api_key and not tokens and not allow_open_relay:
            raise ConfigError(
                "POE_API_KEY is set but PROXY_ACCESS_TOKEN is not: anyone who finds this proxy could "
                "spend your Poe points. Set PROXY_ACCESS_TOKEN (one token or a comma-separated list), "
                "or set ALLOW_OPEN_RELAY=true if that is really what you want."
            )
        return cls(
            poe_base_url=base_url,
            backend=backend,  # type: ignore[arg-type]  # checked above
            default_chat_model=text("DEFAULT_MODEL", DEFAULT_CHAT_MODEL),
            default_embedding_model=text("DEFAULT_EMBEDDING_MODEL", DEFAULT_EMBEDDING_MODEL),
            default_image_model=text("DEFAULT_IMAGE_MODEL", DEFAULT_IMAGE_MODEL),
            default_speech_model=text("DEFAULT_SPEECH_MODEL", DEFAULT_SPEECH_MODEL),
            connect_timeout=number("POE_CONNECT_TIMEOUT", 10.0, minimum=0.001),
            read_timeout=number("POE_READ_TIMEOUT", 120.0, minimum=0.001),
            body_timeout=number("BODY_TIMEOUT", 30.0, minimum=0.001),
            file_timeout=number("FILE_TIMEOUT", 60.0, minimum=0.001),
            max_body_bytes=int(number("MAX_BODY_BYTES", 10 * 1024 * 1024, minimum=1024)),
            max_media_bytes=int(number("MAX_MEDIA_BYTES", 7 * 1024 * 1024, minimum=1)),
            max_file_bytes=int(number("MAX_FILE_BYTES", 20 * 1024 * 1024, minimum=1024)),
            max_n=int(number("MAX_N", 8, minimum=1)),
            max_conversation_bytes=int(number("MAX_CONVERSATION_BYTES", 16 * 1024 * 1024, minimum=1024)),
            poe_api_key=poe_api_key,
            access_tokens=tokens,
            allow_open_relay=allow_open_relay,
            poe_upload_url=upload_url,
            model_aliases=parse_model_aliases(env.get("MODEL_ALIASES", "")),
            models_cache_ttl=number("MODELS_CACHE_TTL", 300.0, minimum=0),
            embedding_batch_size=int(number("EMBEDDING_BATCH_SIZE", 256, minimum=1)),
            log_level=log_level,
            responses_ttl=number("RESPONSES_TTL", 30 * 86400, minimum=60),
        )


def parse_model_aliases(raw: str) -> dict[str, str]:
    """``MODEL_ALIASES`` as a JSON object or as ``a=b,c=d``; keys are matched case-insensitively."""
    raw = raw.strip()
    if not raw:
        return {}
    pairs: dict[str, str] = {}
    if raw.startswith("{"):
        try:
            loaded = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"MODEL_ALIASES is not valid JSON: {exc.msg}") from None
        if not isinstance(loaded, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()
        ):
            raise ConfigError("MODEL_ALIASES JSON must map model names to Poe bot names")
        pairs = loaded
    else:
        for item in raw.split(","):
            if not item.strip():
                continue
            name, sep, target = item.partition("=")
            if not sep or not name.strip() or not target.strip():
                raise ConfigError(f"MODEL_ALIASES entry {item.strip()!r} is not name=bot")
            pairs[name.strip()] = target.strip()
    return {k.strip().lower(): v.strip() for k, v in pairs.items()}
