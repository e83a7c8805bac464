"""core's limits about the request, without any I/O: the key scrubbed from Poe's words, paths
resolved alike for every host, a body that never comes, the schema check's budget, and how a
request's log line is written."""

from __future__ import annotations

import json

import pytest

from core.errors import scrub
from core.exchange import DONE, READ_BODY, Respond, StartCall, request_path
from core.structured import SCHEMA_BUDGET, checked_schema_problem
from tests.test_core_exchange import AUTH, Host, bot_says, chat, request, sse

KEY = "pk-Qx7hT2mZ9wLbV4nR8sYc1dFg5jKa3uEo6iP0"


@pytest.mark.parametrize(
    "text",
    [
        f"bad key {KEY}",
        f"bad key {KEY[:12]}...",
        f"key ending in ...{KEY[-8:]}",
        f"KEY {KEY.upper()}",
        f"run xx{KEY[5:20]}yy here",
        json.dumps({"detail": {"key": KEY}}),
    ],
)
def test_no_piece_of_the_key_survives_scrubbing(text: str) -> None:
    scrubbed = scrub(text, KEY).lower()
    assert all(KEY.lower()[i : i + 6] not in scrubbed for i in range(len(KEY) - 5)), scrubbed
    assert "[redacted]" in scrubbed


def test_scrubbing_leaves_other_words_alone() -> None:
    text = "The bot claude-opus-4.5 is unavailable (request 0f3c2a): try again."
    assert scrub(text, KEY) == text


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("/v1/models", "/v1/models"),
        ("/v1/../v1/models", "/v1/models"),
        ("/v1/chat/%2e%2e/models", "/v1/models"),
        ("/v1/chat/%2E./models", "/v1/models"),
        ("/v1/./models", "/v1/models"),
        ("/../../v1/models", "/v1/models"),
        ("/v1/models/a%2Fb", "/v1/models/a/b"),  # %2F is no separator until decoded, as in a URL
        ("/v1/models/..", "/v1/"),
        ("http://evil.example/v1/models", "/v1/models"),
        ("/%FF", "/\ufffd"),  # not UTF-8: no route matches it
    ],
)
def test_paths_are_resolved_as_a_url_parser_resolves_them(target: str, path: str) -> None:
    assert request_path(target) == path


def test_a_body_that_does_not_come_in_time_is_a_408() -> None:
    exchange = request("POST", "/v1/chat/completions")
    assert exchange.next_action() is READ_BODY
    exchange.body(b'{"model": ', True)
    assert exchange.next_action() is READ_BODY
    exchange.body_failed("timeout")
    response = exchange.next_action()
    assert isinstance(response, Respond) and response.status == 408
    assert json.loads(response.body)["error"]["code"] == "request_timeout"
    assert exchange.next_action() is DONE
    assert exchange.record["error"] == "request_timeout"


def test_an_upload_broken_off_ends_the_request_unanswered() -> None:
    exchange = request("POST", "/v1/chat/completions")
    assert exchange.next_action() is READ_BODY
    exchange.body_failed("aborted")
    assert exchange.next_action() is DONE
    assert (exchange.record["status"], exchange.record["client_left"]) == (499, True)


def test_a_client_that_leaves_mid_answer_stops_the_calls() -> None:
    exchange = request("POST", "/v1/chat/completions")
    exchange.next_action()
    exchange.body(chat(n=2), False)
    assert isinstance(exchange.next_action(), StartCall) and isinstance(exchange.next_action(), StartCall)
    exchange.client_left()
    assert [exchange.next_action() for _ in range(3)][-1] is DONE  # the two calls stopped, then done
    assert exchange.record["status"] == 499


def test_log_levels_say_how_a_request_ended() -> None:
    ok = request("POST", "/v1/chat/completions")
    Host(lambda call: bot_says("hi")).run(ok, chat())
    assert ok.level == "info"
    refused = request("POST", "/v1/chat/completions", {})
    Host(lambda call: []).run(refused)
    assert refused.level == "info"  # a client's mistake
    cut = request("POST", "/v1/chat/completions")
    host = Host(
        lambda call: [("answered", 200, {}), ("data", sse(("text", {"text": "Hel"}))), ("failed", "reset")]
    )
    host.run(cut, chat(stream=True))
    assert (cut.record["status"], cut.record["error"], cut.level) == (
        200,
        "upstream_connection_reset",
        "warning",
    )


def test_the_owners_key_is_scrubbed_from_what_poe_says() -> None:
    exchange = request("POST", "/v1/chat/completions", {"authorization": f"Bearer {KEY}"})
    answer = [
        ("answered", 401, {}),
        ("data", json.dumps({"error": {"message": f"key {KEY[:14]}..."}}).encode()),
        ("ended",),
    ]
    host = Host(lambda call: answer).run(exchange, chat())
    assert KEY[:6] not in host.body.decode()
    assert isinstance(host.response, Respond) and host.response.status == 401


def test_the_schema_check_stops_at_its_budget() -> None:
    # Without a budget this schema doubles the work per level, 64 levels deep.
    bomb = {"allOf": [{"$ref": "#"}, {"$ref": "#"}]}
    assert checked_schema_problem({"a": 1}, bomb, budget=100) is None  # past it: taken as it is
    assert checked_schema_problem({"a": 1}, bomb) is None  # the default budget ends it too
    nested = {"type": "array", "items": {"type": "array", "items": {"type": "string"}}}
    answer = [["a"] * 100] * 100  # a real answer to a real schema: far within the budget
    assert checked_schema_problem(answer, nested) is None
    assert checked_schema_problem([["a"], [1]], nested) == "$[1][0] should be of type string"
    assert SCHEMA_BUDGET > 100 * 100 + 100


def test_two_authorization_headers_are_refused() -> None:
    exchange = request("GET", "/v1/models", {"authorization": "Bearer a, Bearer b"})
    response = exchange.next_action()
    assert isinstance(response, Respond) and response.status == 400
    assert json.loads(response.body)["error"]["code"] == "invalid_authorization_header"


def test_a_405_says_what_is_allowed() -> None:
    response = request("POST", "/v1/models", AUTH).next_action()
    assert isinstance(response, Respond) and (response.status, response.headers["allow"]) == (
        405,
        "GET, OPTIONS",
    )
