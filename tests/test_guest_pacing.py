"""Per-session send pacing (issue 13.9): the Web Messaging machine sends a session's guest messages no
faster than the deployment allows (``message_interval``, from ``PARLEY_GUEST_MESSAGES_PER_SECOND``), and a
429 that comes anyway is still waited out for its retryAfter. Sans-I/O: time is a number."""

from __future__ import annotations

import itertools

from guest.events import GuestMessageConfirmed, RateLimited
from tests.test_guest_protocol_webmessaging import Harness, of_type, own_echo, too_many_requests
from workers.guest.settings import GuestSettings, message_interval_s


def paced(interval: float) -> Harness:
    harness = Harness(message_interval=interval)
    harness.connect()
    harness.take_events()
    return harness


def confirm_all(h: Harness, seconds: float) -> None:
    """The server echoes every message as soon as it is sent, for ``seconds``."""
    end = h.now + seconds
    echoed = 0
    while h.now < end:
        for frame in h.frames("onMessage")[echoed:]:
            h.recv(own_echo(frame["tracingId"], frame["message"]["text"], f"e-{frame['tracingId']}", h.now))
            echoed += 1
        deadline = h.session.next_deadline()
        h.advance(max(0.001, min(end, deadline if deadline is not None else end) - h.now))


def test_a_burst_goes_out_at_the_deployments_rate() -> None:
    h = paced(0.5)  # 2 messages a second
    for n in range(5):
        h.send(f"m{n}")
    confirm_all(h, 3.0)
    sent_at = [at for frame, at in zip(h.sent, h.sent_at, strict=True) if frame["action"] == "onMessage"]
    assert len(sent_at) == 5
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert all(gap >= 0.5 - 1e-9 for gap in gaps), gaps
    assert len(of_type(h.take_events(), GuestMessageConfirmed)) == 5


def test_unpaced_a_confirmed_message_lets_the_next_go_at_once() -> None:
    h = paced(0.0)
    a, _b = h.send("a"), h.send("b")
    h.recv(own_echo(a, "a", "e1", h.now))
    assert h.texts() == ["a", "b"]


def test_a_429_is_still_waited_out_for_its_retry_after() -> None:
    h = paced(0.5)
    h.send("a")
    h.recv(too_many_requests(retry_after=3))
    assert h.take_events() == [RateLimited(retry_after=3)]
    h.run_until(2.9)
    assert h.texts() == ["a"]
    h.run_until(0.2)
    assert h.texts() == ["a", "a"]


def test_the_setting_becomes_the_machines_interval() -> None:
    assert GuestSettings().messages_per_second == 2.0
    assert message_interval_s(GuestSettings(messages_per_second=5)) == 0.2
    assert message_interval_s(GuestSettings(messages_per_second=0)) == 0.0
