"""A command does not hold a worker while its org's rate budget has no slot for it (issue 15.2): the
limiter keeps the place in line of a caller that will not wait that long and gives it its slot when it
comes back; a client view parks only its first request. The runner parking the command is tested in
tests/test_runner.py; the order between lanes in tests/test_lanes.py."""

from __future__ import annotations

import time

import fakeredis
import pytest
from pydantic import SecretStr

from genesys.client import GenesysClient
from genesys.keys import ClientKeys
from genesys.lanes import LineKeys
from genesys.ratelimit import RateBudgetWait, RateLimiter
from genesys.regions import resolve
from parley.settings import Settings
from tests.support.genesys_mock import FakeGenesys
from tests.test_genesys_ratelimit import RecordingRunner

SETTINGS = Settings(genesys_region="eu_west_1", genesys_client_id="c", genesys_client_secret=SecretStr("s"))
KEYS = ClientKeys.for_client(resolve(SETTINGS).login_url, "c")
LINE = LineKeys.of(KEYS.rate).line


def in_line(r: fakeredis.FakeRedis, holder: str) -> bool:
    return r.zscore(LINE, KEYS.slot(holder)) is not None


def limiter(limit: int = 60) -> RateLimiter:
    return RateLimiter(KEYS.rate, KEYS.pause, limit, burst=0)


def test_a_wait_within_the_bound_is_waited_and_a_longer_one_keeps_the_callers_place() -> None:
    r = fakeredis.FakeRedis()
    runner, rl = RecordingRunner(r), limiter(60)  # one slot a second
    interval = rl.interval_ms / 1000
    runner.run(rl.plan_acquire(1.5, KEYS.slot("a")))
    runner.run(rl.plan_acquire(1.5, KEYS.slot("b")))  # the next slot, about 1 s off: waited
    assert runner.pauses == [pytest.approx(interval, abs=0.05)]
    with pytest.raises(RateBudgetWait) as caught:
        runner.run(rl.plan_acquire(1.5, KEYS.slot("c")))  # about 2 s off: parked, nothing slept
    assert caught.value.delay_s == pytest.approx(2 * interval, abs=0.05)
    assert runner.pauses == [pytest.approx(interval, abs=0.05)]
    assert in_line(r, "c") and not r.exists(KEYS.slot("c"))  # its place kept; no slot handed out ahead
    # A later caller queues behind it: it does not take its turn.
    with pytest.raises(RateBudgetWait) as later:
        runner.run(rl.plan_acquire(1.5, KEYS.slot("d")))
    assert later.value.delay_s == pytest.approx(3 * interval, abs=0.05)


def test_a_parked_caller_comes_back_for_its_slot_and_takes_it_without_queueing_again() -> None:
    r = fakeredis.FakeRedis()
    runner, rl = RecordingRunner(r), limiter(60)
    runner.run(rl.plan_acquire())
    with pytest.raises(RateBudgetWait):
        runner.run(rl.plan_acquire(0.0, KEYS.slot("parked")))
    next_free, place = float(r.get(KEYS.rate)), r.zscore(LINE, KEYS.slot("parked"))
    with pytest.raises(RateBudgetWait):  # back too early: still parked, in the same place, nothing taken
        runner.run(rl.plan_acquire(0.0, KEYS.slot("parked")))
    assert float(r.get(KEYS.rate)) == next_free and r.zscore(LINE, KEYS.slot("parked")) == place
    runner.run(rl.plan_acquire(2.0, KEYS.slot("parked")))  # accepts the wait now: takes the next slot
    assert float(r.get(KEYS.rate)) == pytest.approx(next_free + rl.interval_ms) and not in_line(r, "parked")


def test_a_caller_back_later_than_the_burst_tolerance_takes_a_fresh_slot() -> None:
    r = fakeredis.FakeRedis()
    runner, rl = RecordingRunner(r), limiter(60)
    r.set(KEYS.slot("late"), f"{(time.time() - 5) * 1000:.3f}")  # its slot was due 5 s ago
    runner.run(rl.plan_acquire(0.0, KEYS.slot("late")))  # a fresh slot (free now), the lapsed one dropped
    assert not r.exists(KEYS.slot("late")) and float(r.get(KEYS.rate)) > time.time() * 1000


def test_a_pause_longer_than_the_bound_parks_without_reserving() -> None:
    r = fakeredis.FakeRedis()
    r.set(KEYS.pause, "1", px=30_000)  # a 429's Retry-After of 30 s
    with pytest.raises(RateBudgetWait) as caught:
        RecordingRunner(r).run(limiter().plan_acquire(1.0, KEYS.slot("x")))
    assert 29 < caught.value.delay_s <= 30
    assert not r.exists(KEYS.rate) and not r.exists(KEYS.slot("x")) and in_line(r, "x")


def test_a_bound_needs_a_slot_key() -> None:
    with pytest.raises(ValueError, match="go together"):
        RecordingRunner(fakeredis.FakeRedis()).run(limiter().plan_acquire(max_wait_s=1.0))


def test_a_bounded_view_parks_only_its_first_request_and_sends_nothing() -> None:
    r = fakeredis.FakeRedis()
    fake = FakeGenesys()
    settings = SETTINGS.model_copy(update={"genesys_rate_limit_per_minute": 60})
    client = GenesysClient(settings, r, transport=fake.transport())
    client.get_conversation("c-0")
    client.get_conversation("c-0")  # the burst is used: the next slot is about 1 s off
    with pytest.raises(RateBudgetWait):
        client.bounded(0.2, "cmd-1").get_conversation("c-1")
    assert [req.path for req in fake.api_requests] == ["/api/v2/conversations/c-0"] * 2
    assert in_line(r, "cmd-1")
    # A view whose first request went out waits for the later ones (that request may have had an effect).
    r.delete(KEYS.rate, LINE)
    view = client.bounded(0.2, "cmd-2")
    for n in (2, 3, 4):
        view.get_conversation(f"c-{n}")  # c-4's slot is about 1 s off: waited, not parked
    assert [req.path for req in fake.api_requests][-3:] == [f"/api/v2/conversations/c-{n}" for n in (2, 3, 4)]
    # The shared client is not bounded by its views.
    assert client._pipeline.rate_wait_max_s is None and client._pipeline.rate_slot_key is None
