"""core.text.TextGate: stop sequences and length limits over text in pieces."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.text import TextGate


def run(
    pieces: list[str], stop: tuple[str, ...] = (), max_chars: int | None = None
) -> tuple[str, str | None]:
    gate = TextGate(stop, max_chars)
    out = "".join(gate.push(p) for p in pieces) + gate.finish()
    return out, gate.reason


def reference(text: str, stop: tuple[str, ...], max_chars: int | None) -> tuple[str, str | None]:
    """What the gate must produce, computed on the whole text at once."""
    positions = [text.find(s) for s in stop if s and s in text]
    reason = None
    if positions:
        text, reason = text[: min(positions)], "stop"
    if max_chars is not None and len(text) > max_chars:
        text, reason = text[:max_chars], "length"
    return text, reason


def test_stop_split_over_three_pieces() -> None:
    assert run(["alpha be", "ta E", "N", "D gamma"], ("END",)) == ("alpha beta ", "stop")


def test_partial_stop_that_does_not_complete_is_released() -> None:
    gate = TextGate(("END",))
    assert gate.push("an E") == "an "  # "E" might start "END": held
    assert gate.push("X") == "EX"
    assert gate.finish() == ""
    assert gate.reason is None


def test_held_text_is_released_at_the_end() -> None:
    assert run(["ends with EN"], ("END",)) == ("ends with EN", None)


def test_earliest_of_several_stops_wins() -> None:
    assert run(["a.b!c"], ("!", ".")) == ("a", "stop")


def test_longer_stop_starting_earlier_wins_across_pieces() -> None:
    # Found by hypothesis: "N" is complete in "DDN", but "DND" starts one character earlier.
    assert run(["DDN", "D"], ("N", "DND")) == ("D", "stop")
    assert run(["DDN", "x"], ("N", "DND")) == ("DD", "stop")
    assert run(["DDN"], ("N", "DND")) == ("DD", "stop")


def test_length_limit() -> None:
    assert run(["abc", "def", "ghi"], max_chars=5) == ("abcde", "length")


def test_stop_after_limit_counts_as_length() -> None:
    assert run(["abcdef STOP"], ("STOP",), max_chars=3) == ("abc", "length")


def test_nothing_passes_after_close() -> None:
    gate = TextGate(("x",))
    assert gate.push("ax") == "a"
    assert gate.push("more") == ""
    assert gate.closed


alphabet = st.sampled_from("abEND.\n ")


@given(
    text=st.text(alphabet, max_size=60),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=12),
    stop=st.lists(st.text(alphabet, min_size=1, max_size=4), max_size=3),
    max_chars=st.none() | st.integers(min_value=0, max_value=70),
)
def test_any_split_gives_the_reference_result(
    text: str, cuts: list[int], stop: list[str], max_chars: int | None
) -> None:
    points = sorted({c for c in cuts if c <= len(text)})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    assert run(pieces, tuple(stop), max_chars) == reference(text, tuple(stop), max_chars)


@given(text=st.text(alphabet, max_size=40), stop=st.text(alphabet, min_size=1, max_size=4))
def test_never_holds_more_than_a_stop_prefix(text: str, stop: str) -> None:
    gate = TextGate((stop,))
    out = gate.push(text)
    if not gate.closed:
        held = text[len(out) :]
        assert len(held) < len(stop) and stop.startswith(held)
