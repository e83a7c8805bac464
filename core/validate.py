"""Small typed readers for JSON request bodies. Each failure is a 400 that names the ``param``."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from .errors import InvalidRequestError

MAX_JSON_DEPTH = 64


def parse_json_object(body: bytes | str) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what is wrong with it.

    What could hurt the host is refused before decoding: nesting deeper than ``MAX_JSON_DEPTH``
    (a decoder recurses per level, and in Pyodide a stack overflow ends the process), and
    escapes of lone UTF-16 surrogates (a string no encoder can write out again).
    """
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
    if text.count("{") + text.count("[") > MAX_JSON_DEPTH:  # fewer cannot nest that deep
        _check_depth(text)
    try:
        value = json.loads(text)
    except RecursionError:  # not reached: the depth was checked (kept as a last line)
        raise InvalidRequestError("The request body is nested too deeply.", code="invalid_json") from None
    except ValueError as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(value, dict):
        raise InvalidRequestError("The request body must be a JSON object.", code="invalid_json")
    if _SURROGATE_ESCAPE.search(text):
        _check_strings(value, "")
    return value


_STRING = re.compile(r'"[^"]*"')  # once escaped backslashes and quotes are gone
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_depth(text: str) -> None:
    """Refuse ``text`` if its arrays and objects nest deeper than ``MAX_JSON_DEPTH``, without
    decoding it: strings are cut out, and each round removes every innermost pair, so a pair
    left after ``MAX_JSON_DEPTH`` rounds nests deeper. (Brackets that do not balance are left to
    the decoder, which refuses them recursing no deeper than twice the limit.)"""
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    brackets = _NOT_BRACKETS.sub("", _STRING.sub("", unescaped)).replace("{", "[").replace("}", "]")
    for _ in range(MAX_JSON_DEPTH):
        if not brackets:
            return
        brackets = brackets.replace("[]", "")
    if "[]" in brackets or brackets.count("[") > MAX_JSON_DEPTH:
        raise InvalidRequestError(
            f"The request body is nested too deeply: arrays and objects more than {MAX_JSON_DEPTH} levels.",
            code="invalid_json",
        )


def _check_strings(value: Any, path: str) -> None:
    """Refuse a string holding a lone surrogate (an unpaired ``\\ud800`` escape), naming where."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                stack.append((key, where))
                stack.append((inner, f"{where}.{key}" if where else str(key)))
        elif isinstance(item, list):
            stack.extend((inner, f"{where}[{i}]") for i, inner in enumerate(item))
        elif isinstance(item, str) and not _encodable(item):
            raise InvalidRequestError(
                "The request body has a string with an unpaired UTF-16 surrogate escape"
                f"{f' in {where!r}' if where else ''}; send valid Unicode text.",
                param=where or None,
                code="invalid_encoding",
            )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
