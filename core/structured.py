"""Structured output (``response_format`` ``json_object`` / ``json_schema``) for bots that only
write text.

Poe's chat APIs do not enforce ``response_format``, so the proxy asks for JSON in the system
prompt (``chat_request.json_instruction``), strips a Markdown code fence around the answer as it
streams (``CodeFenceStripper``), and checks the finished answer (``json_answer_problem``). A
non-streaming answer that fails the check is asked for once more (``with_json_correction``);
the second answer is returned as it is, valid or not (README, "Structured output").
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from .chat_request import ChatMessage, ChatRequest

_FENCE = "```"
_CLOSING_TAIL = re.compile(r"\s*`{0,3}\s*$")


class CodeFenceStripper:
    """Removes ```` ```json ... ``` ```` around streamed text; other text passes through.

    Holds back only what it must: the opening line until it is known to be a fence, and a
    trailing run of whitespace and backticks that may be the closing fence.
    """

    __slots__ = ("_fenced", "_head", "_held", "_state")

    def __init__(self) -> None:
        self._state = "head"  # "head": deciding; "body": inside; "plain": no fence
        self._head = ""
        self._held = ""
        self._fenced = False

    def push(self, text: str) -> str:
        if self._state == "plain":
            return text
        if self._state == "head":
            self._head += text
            start = self._head.lstrip()
            if not start or (_FENCE.startswith(start) and len(start) < len(_FENCE)):
                return ""  # whitespace or the first backticks: not decided yet
            if not start.startswith(_FENCE):
                self._state = "plain"
                head, self._head = self._head, ""
                return head
            newline = start.find("\n")
            if newline == -1:
                return ""  # still on the fence line (```json)
            self._state, self._fenced, self._head = "body", True, ""
            text = start[newline + 1 :]
        return self._body(text)

    def _body(self, text: str) -> str:
        buffer = self._held + text
        tail = _CLOSING_TAIL.search(buffer)
        cut = tail.start() if tail else len(buffer)
        self._held = buffer[cut:]
        return buffer[:cut]

    def finish(self) -> str:
        """The text ended: release what was held, minus a closing fence."""
        if self._state == "head":
            head, self._head = self._head, ""
            return head
        held, self._held = self._held, ""
        return "" if self._fenced and held.strip() == _FENCE else held


def json_answer_problem(request: ChatRequest, text: str) -> str | None:
    """Why ``text`` is not the JSON that ``response_format`` asked for, or ``None`` if it is."""
    if request.json_mode is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"it is not valid JSON ({exc})"
    if request.json_mode == "json_object" and not isinstance(value, dict):
        return "it is not a JSON object"
    schema = request.json_schema
    return None if schema is None else checked_schema_problem(value, schema)


def json_correction(problem: str) -> str:
    """What the bot is told when its answer was not the JSON asked for (the one retry)."""
    return (
        f"Your previous answer was rejected because {problem}. Answer again with only the JSON, "
        "exactly as instructed: no prose, no code fences."
    )


def with_json_correction(request: ChatRequest, answer: str, problem: str) -> ChatRequest:
    """``request`` with the bad answer and a request to fix it appended (the one retry)."""
    correction = json_correction(problem)
    added = (ChatMessage(role="assistant", content=answer), ChatMessage(role="user", content=correction))
    raw = dict(request.raw)
    raw["messages"] = [
        *request.raw.get("messages", []),
        {"role": "assistant", "content": answer},
        {"role": "user", "content": correction},
    ]
    return dataclasses.replace(request, messages=request.messages + added, raw=raw)


# -- a small JSON Schema checker ------------------------------------------------------------
# Enough of JSON Schema for what OpenAI's structured outputs accept (types, properties,
# required, additionalProperties, items, enum, const, anyOf/oneOf/allOf, $ref into $defs, and
# the usual bounds). Unknown keywords are not checked. Pure Python on purpose: it runs in
# Pyodide too.

_TYPES: Mapping[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
}
_MAX_DEPTH = 64
# How many (sub)schemas one check may visit. A schema can make the check exponential in its
# size (``{"allOf": [{"$ref": "#"}, {"$ref": "#"}]}`` doubles per level); a real one checked
# against a real answer visits hundreds. Past the budget the answer is taken as it is.
SCHEMA_BUDGET = 20_000


class _OverBudget(Exception):
    pass


class _Budget:
    __slots__ = ("left",)

    def __init__(self, visits: int) -> None:
        self.left = visits


def checked_schema_problem(value: Any, schema: Any, budget: int = SCHEMA_BUDGET) -> str | None:
    """``schema_problem`` for a whole answer, within ``budget`` visits: an answer whose check
    would cost more is not judged (``None``), never a request that runs for hours."""
    try:
        return schema_problem(value, schema, schema, "$", 0, _Budget(budget))
    except _OverBudget:
        return None


def schema_problem(
    value: Any, schema: Any, root: Mapping[str, Any], path: str, depth: int, budget: _Budget
) -> str | None:
    """The first way ``value`` breaks ``schema`` (``path`` names where), or ``None``."""
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return None
    budget.left -= 1
    if budget.left < 0:
        raise _OverBudget
    if isinstance(schema.get("$ref"), str):
        return schema_problem(value, _resolve(schema["$ref"], root), root, path, depth + 1, budget)
    for check in (_type_problem, _choice_problem, _object_problem, _array_problem, _bounds_problem):
        problem = check(value, schema, root, path, depth, budget)
        if problem:
            return problem
    return None


def _list(value: Any) -> list[Any]:
    """A keyword that should hold an array; anything else (a client's typo) checks nothing."""
    return value if isinstance(value, list) else []


def _resolve(ref: str, root: Mapping[str, Any]) -> Any:
    if not ref.startswith("#"):
        return None  # remote references are not followed
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/") if ref != "#" else []:
        node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, Mapping) else None
    return node


def _type_problem(
    value: Any, schema: Mapping[str, Any], root: Any, path: str, depth: int, budget: _Budget
) -> str | None:
    wanted = schema.get("type")
    names = [wanted] if isinstance(wanted, str) else wanted if isinstance(wanted, list) else []
    known = [n for n in names if isinstance(n, str) and n in _TYPES]
    if known and not any(_TYPES[n](value) for n in known):
        return f"{path} should be of type {' or '.join(known)}"
    if "enum" in schema and isinstance(schema["enum"], list) and value not in schema["enum"]:
        return f"{path} should be one of {json.dumps(schema['enum'])}"
    if "const" in schema and value != schema["const"]:
        return f"{path} should be {json.dumps(schema['const'])}"
    return None


def _choice_problem(
    value: Any, schema: Mapping[str, Any], root: Any, path: str, depth: int, budget: _Budget
) -> str | None:
    for keyword in ("anyOf", "oneOf"):
        options = schema.get(keyword)
        if (
            isinstance(options, list)
            and options
            and all(schema_problem(value, o, root, path, depth + 1, budget) for o in options)
        ):
            return f"{path} matches none of the allowed shapes"
    for option in _list(schema.get("allOf")):
        problem = schema_problem(value, option, root, path, depth + 1, budget)
        if problem:
            return problem
    return None


def _object_problem(
    value: Any, schema: Mapping[str, Any], root: Any, path: str, depth: int, budget: _Budget
) -> str | None:
    if not isinstance(value, dict):
        return None
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    for name in _list(schema.get("required")):
        if isinstance(name, str) and name not in value:
            return f"{path} is missing the required property {name!r}"
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            problem = schema_problem(item, properties[name], root, f"{path}.{name}", depth + 1, budget)
        elif extra is False:
            problem = f"{path} has a property {name!r} that the schema does not allow"
        else:
            problem = schema_problem(item, extra, root, f"{path}.{name}", depth + 1, budget)
        if problem:
            return problem
    return None


def _array_problem(
    value: Any, schema: Mapping[str, Any], root: Any, path: str, depth: int, budget: _Budget
) -> str | None:
    if not isinstance(value, list) or not isinstance(schema.get("items"), Mapping):
        return None
    for index, item in enumerate(value):
        problem = schema_problem(item, schema["items"], root, f"{path}[{index}]", depth + 1, budget)
        if problem:
            return problem
    return None


_BOUNDS: tuple[tuple[str, Callable[[float, float], bool], str], ...] = (
    ("minimum", lambda v, b: v >= b, "at least"),
    ("maximum", lambda v, b: v <= b, "at most"),
    ("exclusiveMinimum", lambda v, b: v > b, "more than"),
    ("exclusiveMaximum", lambda v, b: v < b, "less than"),
)


def _bounds_problem(
    value: Any, schema: Mapping[str, Any], root: Any, path: str, depth: int, budget: _Budget
) -> str | None:
    if _TYPES["number"](value):
        for keyword, ok, words in _BOUNDS:
            bound: Any = schema.get(keyword)
            if _TYPES["number"](bound) and not ok(value, bound):
                return f"{path} should be {words} {bound}"
    sized = value if isinstance(value, str | list) else None
    if sized is not None:
        low = schema.get("minLength" if isinstance(value, str) else "minItems")
        high = schema.get("maxLength" if isinstance(value, str) else "maxItems")
        if isinstance(low, int) and len(sized) < low:
            return f"{path} is shorter than {low}"
        if isinstance(high, int) and len(sized) > high:
            return f"{path} is longer than {high}"
    return None
