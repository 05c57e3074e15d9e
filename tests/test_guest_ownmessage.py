"""One rule for finding our own message in history (guest.ownmessage), as a reconnect and an adoption use it."""

from __future__ import annotations

from datetime import UTC, datetime

from guest.ownmessage import OwnMessage

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _at(seconds: int) -> str:
    return datetime.fromtimestamp(T0.timestamp() + seconds, UTC).isoformat().replace("+00:00", "Z")


def test_the_same_text_not_yet_confirmed_and_not_older_than_what_went_before_it() -> None:
    sought = OwnMessage("hello", not_before=T0, confirmed={"m1"})
    assert sought.matches("m2", "hello", _at(5))
    assert not sought.matches("m2", "hello!", _at(5)), "another text"
    assert not sought.matches("m1", "hello", _at(5)), "already confirmed as an earlier message"
    assert not sought.matches("m2", "hello", _at(-5)), "older than what went before it"
    assert sought.matches("m2", "hello", None) and sought.matches("m2", "hello", "some_time"), "no usable time"
    assert OwnMessage("hello").matches("m0", "hello", _at(-3600)), "nothing known: any time"


def test_a_guest_who_repeats_themselves_the_earliest_candidate_is_ours() -> None:
    sought = OwnMessage("yes", not_before=T0, confirmed={"m1"})
    page = [("m4", "m4", "yes", _at(30)), ("m1", "m1", "yes", _at(1)), ("m3", "m3", "yes", _at(10)),
            ("m2", "m2", "no", _at(5))]  # newest first, as Web Messaging history pages come
    assert sought.find(page) == "m3"
    assert sought.find([("m2", "m2", "no", _at(5))]) is None
    assert OwnMessage("yes").find([("a", "a", "yes", None), ("b", "b", "yes", _at(1))]) == "b", "timeless sorts last"
