"""Embeddings: validate, split into upstream-sized batches, join the answers in order.

Poe serves embeddings only through its OpenAI-compatible ``/v1/embeddings``. The proxy always
asks upstream for floats and encodes ``base64`` itself (little-endian float32, exactly what
OpenAI returns), so both formats are checked the same way. If Poe does not serve a model, the
client gets Poe's error: the proxy never makes up a vector.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from .errors import InvalidRequestError, UpstreamError
from .settings import Settings
from .validate import missing_parameter, opt_int, opt_str, type_error

MAX_INPUTS = 2048
EncodingFormat = Literal["float", "base64"]


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    model: str
    inputs: tuple[str, ...]
    dimensions: int | None = None
    encoding_format: EncodingFormat = "float"
    user: str | None = None


def parse_embeddings_request(body: Mapping[str, Any], settings: Settings) -> EmbeddingsRequest:
    """Validate an OpenAI ``/v1/embeddings`` body. Raises ``InvalidRequestError``."""
    model = opt_str(body, "model") or settings.default_embedding_model
    raw = body.get("input")
    if raw is None:
        raise missing_parameter("input")
    if isinstance(raw, list) and raw and all(isinstance(t, int) and not isinstance(t, bool) for t in raw):
        raise _token_arrays_unsupported("input")
    if isinstance(raw, str):
        inputs: list[Any] = [raw]
    elif isinstance(raw, list):
        inputs = raw
    else:
        raise type_error("input", "a string or an array of strings", raw)
    if not inputs:
        raise InvalidRequestError("'input' must not be empty.", param="input", code="empty_array")
    if len(inputs) > MAX_INPUTS:
        raise InvalidRequestError(
            f"'input' may hold at most {MAX_INPUTS} items, got {len(inputs)}.",
            param="input",
            code="invalid_value",
        )
    texts = []
    for i, item in enumerate(inputs):
        if isinstance(item, list) and all(isinstance(t, int) for t in item):
            raise _token_arrays_unsupported(f"input[{i}]")
        if not isinstance(item, str):
            raise type_error(f"input[{i}]", "a string", item)
        if not item:
            raise InvalidRequestError(
                f"'input[{i}]' must not be an empty string.", param=f"input[{i}]", code="invalid_value"
            )
        texts.append(item)
    encoding = opt_str(body, "encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise InvalidRequestError(
            f"Invalid value for 'encoding_format': {encoding!r} is not one of 'float', 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    return EmbeddingsRequest(
        model=model,
        inputs=tuple(texts),
        dimensions=opt_int(body, "dimensions", 1, 65536),
        encoding_format=encoding,  # type: ignore[arg-type]  # checked above
        user=opt_str(body, "user"),
    )


def _token_arrays_unsupported(param: str) -> InvalidRequestError:
    # Token ids need the model's tokenizer to decode; the proxy has none (README).
    return InvalidRequestError(
        "Token arrays are not supported by this proxy: send the text instead.",
        param=param,
        code="unsupported_input",
    )


def upstream_batches(request: EmbeddingsRequest, batch_size: int) -> list[dict[str, Any]]:
    """The bodies to send upstream, each at most ``batch_size`` inputs, in input order."""
    bodies = []
    for start in range(0, len(request.inputs), batch_size):
        body: dict[str, Any] = {
            "model": request.model,
            "input": list(request.inputs[start : start + batch_size]),
            "encoding_format": "float",
        }
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        if request.user is not None:
            body["user"] = request.user
        bodies.append(body)
    return bodies


def encode_base64(vector: Sequence[float]) -> str:
    """A vector as OpenAI's base64: little-endian float32, packed."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def join_embeddings(request: EmbeddingsRequest, answers: Sequence[Any], batch_size: int) -> dict[str, Any]:
    """One OpenAI ``list`` of embeddings from the upstream answers to ``upstream_batches``."""
    data = []
    prompt_tokens = total_tokens = 0
    model = request.model
    for batch_index, answer in enumerate(answers):
        expected = min(batch_size, len(request.inputs) - batch_index * batch_size)
        items = answer.get("data") if isinstance(answer, Mapping) else None
        if not isinstance(items, list) or len(items) != expected:
            raise UpstreamError("Poe returned the wrong number of embeddings.", code="upstream_malformed")
        ordered = sorted(items, key=lambda item: item.get("index", 0) if isinstance(item, Mapping) else 0)
        for offset, item in enumerate(ordered):
            vector = item.get("embedding") if isinstance(item, Mapping) else None
            if not _is_vector(vector):
                raise UpstreamError(
                    "Poe returned an embedding that is not a vector of numbers.", code="upstream_malformed"
                )
            if request.dimensions is not None and len(vector) != request.dimensions:
                raise UpstreamError(
                    f"Poe returned {len(vector)} dimensions where {request.dimensions} were asked for.",
                    code="upstream_malformed",
                )
            value: Any = (
                encode_base64(vector) if request.encoding_format == "base64" else [float(x) for x in vector]
            )
            data.append(
                {"object": "embedding", "index": batch_index * batch_size + offset, "embedding": value}
            )
        usage = answer.get("usage") if isinstance(answer, Mapping) else None
        if isinstance(usage, Mapping):
            prompt_tokens += _int(usage.get("prompt_tokens"))
            total_tokens += _int(usage.get("total_tokens")) or _int(usage.get("prompt_tokens"))
        if isinstance(answer.get("model"), str):
            model = answer["model"]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": total_tokens},
    }


def _is_vector(value: Any) -> TypeGuard[list[float]]:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in value)
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
