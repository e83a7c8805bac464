"""The OpenAI error model: one exception family that knows how to answer.

Every failure the proxy reports - bad input, a missing key, an upstream fault - is an
``OpenAIError``. It carries the HTTP status and the fields of OpenAI's error body
(``{"error": {"message", "type", "param", "code"}}``), so the I/O layer only has to
serialise it, whether as a response or as an event in the middle of a stream.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

# Bearer tokens and Poe keys must never be echoed back; every text from Poe that reaches a
# client is scrubbed of the key the request used (``scrub``) and of anything labelled as a secret.
_LABELLED_SECRETS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(
        r"(?i)((?:api[_-]?key|access[_-]?key|authorization|token)[\"']?\s*[:=]\s*[\"']?)"
        r"[A-Za-z0-9._~+/=-]{6,}"
    ),
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),
)
# A run of the characters keys are made of; any run that holds part of the key is hidden whole.
_KEY_LIKE_RUN = re.compile(r"[A-Za-z0-9._~+/=-]{6,}")
_TRAILING_RUN = re.compile(r"[A-Za-z0-9._~+/=-]*$")
# What a fragment of the key is: a run of at least this many of its characters.
KEY_FRAGMENT = 6
REDACTED = "[redacted]"
UPSTREAM_TEXT_LIMIT = 300


class OpenAIError(Exception):
    """Base of the family. Subclasses fix ``status`` and ``type``; ``code``/``param`` vary."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers: dict[str, str] = dict(headers or {})

    def to_dict(self) -> dict[str, Any]:
        """The body OpenAI sends for this error."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, param={self.param!r}, code={self.code!r})"


class InvalidRequestError(OpenAIError):
    status = 400
    type = "invalid_request_error"


class AuthenticationError(OpenAIError):
    status = 401
    type = "invalid_request_error"
    default_code = "invalid_api_key"


class InsufficientQuotaError(OpenAIError):
    status = 402
    type = "insufficient_quota"
    default_code = "insufficient_quota"


class PermissionDeniedError(OpenAIError):
    status = 403
    type = "invalid_request_error"
    default_code = "permission_denied"


class NotFoundError(OpenAIError):
    status = 404
    type = "invalid_request_error"
    default_code = "not_found"


class MethodNotAllowedError(OpenAIError):
    status = 405
    type = "invalid_request_error"
    default_code = "method_not_allowed"


class RequestTimeoutError(OpenAIError):
    status = 408
    type = "invalid_request_error"
    default_code = "request_timeout"


class RequestTooLargeError(OpenAIError):
    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class UnprocessableError(OpenAIError):
    status = 422
    type = "invalid_request_error"


class RateLimitError(OpenAIError):
    status = 429
    type = "requests"
    default_code = "rate_limit_exceeded"


class StoreUnavailableError(OpenAIError):
    """The host's store of responses failed (or there is none), so a stored response is out of
    reach for now."""

    status = 503
    type = "server_error"
    default_code = "store_unavailable"


class UpstreamError(OpenAIError):
    """Poe answered, but not with something we can pass on (5xx, garbage, a broken stream)."""

    status = 502
    type = "server_error"
    default_code = "upstream_error"


class UpstreamUnavailableError(UpstreamError):
    status = 503
    default_code = "upstream_unavailable"


class UpstreamTimeoutError(UpstreamError):
    status = 504
    default_code = "upstream_timeout"


def scrub(text: str, key: str) -> str:
    """``text`` with no piece of ``key`` in it, whatever its shape (whole, cut to a prefix or a
    suffix, another case, inside a longer run) and nothing labelled as a secret."""
    for pattern in _LABELLED_SECRETS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    if len(key) < KEY_FRAGMENT:
        return text
    lowered = key.lower()
    fragments = {lowered[i : i + KEY_FRAGMENT] for i in range(len(lowered) - KEY_FRAGMENT + 1)}

    def hide(match: re.Match[str]) -> str:
        run = match.group().lower()
        if run in lowered or any(fragment in run for fragment in fragments):
            return REDACTED
        return match.group()

    return _KEY_LIKE_RUN.sub(hide, text)


def scrub_all(value: Any, key: str) -> Any:
    """``value`` (decoded JSON, such as an error Poe relays inside a 200) with every string in it
    scrubbed of ``key``."""
    if isinstance(value, str):
        return scrub(value, key)
    if isinstance(value, dict):
        return {name: scrub_all(item, key) for name, item in value.items()}
    if isinstance(value, list):
        return [scrub_all(item, key) for item in value]
    return value


def scrub_error(error: OpenAIError, key: str) -> OpenAIError:
    """``error`` fit to leave the proxy: no piece of ``key`` in any of its fields (Poe's words
    are in them: the message, and the ``code`` and ``param`` Poe named) nor in its headers; a
    header that scrubbing changed is dropped (half a header is no header)."""
    error.message = scrub(error.message, key)
    error.code = None if error.code is None else scrub(error.code, key)
    error.param = None if error.param is None else scrub(error.param, key)
    error.headers = {name: value for name, value in error.headers.items() if scrub(value, key) == value}
    return error


def scrub_response(response: Any, key: str) -> Any:
    """A Responses object from Poe with every field Poe fills scrubbed of ``key``
    (``incomplete_details``, ``error``, ``metadata``, …) but ``output``: the model's own words,
    which reach the client as they were said."""
    if not isinstance(response, dict):
        return scrub_all(response, key)
    return {name: value if name == "output" else scrub_all(value, key) for name, value in response.items()}


# A Retry-After value as RFC 9110 has it: seconds, or an HTTP date.
_RETRY_AFTER = re.compile(
    r"[0-9]{1,10}|[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)


def summarize_upstream_text(body: str) -> str:
    """Upstream error text fit to show a client: one line, short (the key is scrubbed from every
    error as it leaves, ``scrub``)."""
    if "<html" in body[:500].lower() or "<!doctype" in body[:500].lower():
        # An HTML error page (a CDN or load balancer) says nothing useful to an API client.
        return "upstream returned an HTML error page"
    text = " ".join(body.split())
    if len(text) > UPSTREAM_TEXT_LIMIT:  # cut between words: no stub of a key is left at the end
        text = _TRAILING_RUN.sub("", text[: UPSTREAM_TEXT_LIMIT - 3]) + "..."
    return text


def _upstream_message(body: Any) -> str | None:
    """Pull the human message out of an upstream error body (OpenAI or Poe shaped)."""
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
        for key in ("message", "detail", "text"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return None


def connection_refused() -> UpstreamUnavailableError:
    """No connection to Poe could be made."""
    return UpstreamUnavailableError("Could not connect to Poe.", code="upstream_connect_error")


def connection_reset() -> UpstreamError:
    """The connection to Poe broke while its answer was being read."""
    return UpstreamError("The connection to Poe was reset.", code="upstream_connection_reset")


def not_json() -> UpstreamError:
    """A JSON call that Poe answered with something else."""
    return UpstreamError("Poe answered with something that is not JSON.", code="upstream_malformed")


# How much of an upstream error body is read and looked at.
UPSTREAM_ERROR_BODY_LIMIT = 64 * 1024


def error_from_upstream_status(
    status: int,
    body: bytes,
    *,
    headers: Mapping[str, str] | None = None,
) -> OpenAIError:
    """Map an upstream HTTP error (status and the first bytes of its body) to the OpenAI error a
    client expects. A JSON body's own message is preferred to its raw text."""
    body_text = body[:UPSTREAM_ERROR_BODY_LIMIT].decode("utf-8", errors="replace")
    try:
        parsed_body = json.loads(body_text)
    except ValueError:
        parsed_body = None
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    message = _upstream_message(parsed_body)
    detail = summarize_upstream_text(message if message is not None else body_text)
    upstream_code = upstream_param = None  # what Poe's own OpenAI-shaped error names
    if isinstance(parsed_body, Mapping) and isinstance(parsed_body.get("error"), Mapping):
        said = parsed_body["error"]
        upstream_code = said["code"] if isinstance(said.get("code"), str) else None
        upstream_param = said["param"] if isinstance(said.get("param"), str) else None
    suffix = f": {detail}" if detail else ""
    if status == 401:
        return AuthenticationError(f"Poe rejected the API key{suffix}")
    if status == 402:
        return InsufficientQuotaError(f"Poe reports insufficient points{suffix}")
    if status == 403:
        return PermissionDeniedError(f"Poe denied access{suffix}")
    if status == 404:
        model = upstream_code in (None, "model_not_found")
        what = "Poe has no such model or endpoint" if model else "Poe found no such object"
        return NotFoundError(f"{what}{suffix}", param=upstream_param, code=upstream_code or "model_not_found")
    if status == 408:
        return UpstreamTimeoutError(f"Poe timed out{suffix}")
    if status == 413:
        return RequestTooLargeError(f"Poe rejected the request as too large{suffix}")
    if status == 429:
        retry_after = headers.get("retry-after", "").strip()
        extra = {"Retry-After": retry_after} if _RETRY_AFTER.fullmatch(retry_after) else None
        return RateLimitError(f"Poe rate limit reached{suffix}", headers=extra)
    if 400 <= status < 500:
        return InvalidRequestError(
            f"Poe rejected the request ({status}){suffix}", param=upstream_param, code=upstream_code
        )
    if status in (503, 529):
        return UpstreamUnavailableError(f"Poe is unavailable ({status}){suffix}")
    if status == 504:
        return UpstreamTimeoutError(f"Poe timed out ({status}){suffix}")
    return UpstreamError(f"Poe failed ({status}){suffix}")
