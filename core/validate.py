"""Small typed readers for JSON request bodies. Each failure is a 400 that names the ``param``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .errors import InvalidRequestError

MAX_JSON_DEPTH = 64


def parse_json_object(body: bytes | str) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what is wrong with it."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequestError(
                "The request body is not valid UTF-8.", code="invalid_encoding"
            ) from None
    else:
        text = body
    if not text.strip():
        raise InvalidRequestError("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidRequestError("The request body is nested too deeply.", code="invalid_json") from None
    except ValueError as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(value, dict):
        raise InvalidRequestError("The request body must be a JSON object.", code="invalid_json")
    if text.count("{") + text.count("[") > MAX_JSON_DEPTH:  # fewer cannot nest that deep
        _check_depth(value)
    return value


def _check_depth(value: Any) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InvalidRequestError("The request body is nested too deeply.", code="invalid_json")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def type_error(param: str, expected: str, value: Any) -> InvalidRequestError:
    return InvalidRequestError(
        f"Invalid type for '{param}': expected {expected}, but got {json_type(value)}.",
        param=param,
        code="invalid_type",
    )


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def missing_parameter(param: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def opt_str(body: Mapping[str, Any], key: str, *, param: str | None = None) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise type_error(param or key, "a string", value)
    return value


def opt_bool(body: Mapping[str, Any], key: str, *, param: str | None = None) -> bool | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise type_error(param or key, "a boolean", value)
    return value


def opt_number(
    body: Mapping[str, Any], key: str, low: float, high: float, *, param: str | None = None
) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise type_error(param or key, "a number", value)
    if not low <= value <= high:
        raise InvalidRequestError(
            f"Invalid value for '{param or key}': {value} is not between {low:g} and {high:g}.",
            param=param or key,
            code="invalid_value",
        )
    return float(value)


def opt_int(
    body: Mapping[str, Any],
    key: str,
    low: int,
    high: int | None = None,
    *,
    param: str | None = None,
) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(param or key, "an integer", value)
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise InvalidRequestError(
            f"Invalid value for '{param or key}': {value} must be {bound}.",
            param=param or key,
            code="invalid_value",
        )
    return value


def opt_object(body: Mapping[str, Any], key: str, *, param: str | None = None) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise type_error(param or key, "an object", value)
    return value


def opt_list(body: Mapping[str, Any], key: str, *, param: str | None = None) -> list[Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise type_error(param or key, "an array", value)
    return value


def required_str(body: Mapping[str, Any], key: str, *, param: str | None = None) -> str:
    value = opt_str(body, key, param=param)
    if value is None:
        raise missing_parameter(param or key)
    return value
