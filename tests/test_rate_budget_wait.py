"""A command does not hold a worker while its org's rate budget has no slot for it (issue 15.2): the
limiter refuses a wait longer than the caller accepts (reserving nothing) and hands out come-back
times one slot apart; a client view refuses only its first request. The runner parking the command is
tested in tests/test_runner.py."""

from __future__ import annotations

import fakeredis
import pytest
from pydantic import SecretStr

from genesys.client import GenesysClient
from genesys.keys import ClientKeys
from genesys.ratelimit import RateBudgetWait, RateLimiter
from genesys.regions import resolve
from parley.settings import Settings
from tests.support.genesys_mock import FakeGenesys
from tests.test_genesys_ratelimit import RecordingRunner

SETTINGS = Settings(genesys_region="eu_west_1", genesys_client_id="c", genesys_client_secret=SecretStr("s"))
KEYS = ClientKeys.for_client(resolve(SETTINGS).login_url, "c")


def limiter(limit: int = 60) -> RateLimiter:
    return RateLimiter(KEYS.rate, KEYS.pause, limit, burst=0, come_back_key=KEYS.come_back)


def test_a_wait_within_the_bound_is_waited_and_a_longer_one_reserves_nothing() -> None:
    r = fakeredis.FakeRedis()
    runner, rl = RecordingRunner(r), limiter(60)  # one slot a second
    runner.run(rl.plan_acquire(max_wait_s=1.5))
    runner.run(rl.plan_acquire(max_wait_s=1.5))  # the next slot, about 1 s off: waited
    assert runner.pauses == [pytest.approx(rl.interval_ms / 1000, abs=0.05)]
    reserved = r.get(KEYS.rate)
    with pytest.raises(RateBudgetWait) as caught:
        runner.run(rl.plan_acquire(max_wait_s=1.5))  # about 2 s off: refused
    assert caught.value.delay_s == pytest.approx(2 * rl.interval_ms / 1000, abs=0.05)
    assert r.get(KEYS.rate) == reserved  # nothing reserved for it
    assert runner.pauses == [pytest.approx(rl.interval_ms / 1000, abs=0.05)]  # and nothing slept


def test_refused_callers_come_back_one_slot_apart_in_the_order_refused() -> None:
    r = fakeredis.FakeRedis()
    runner, rl = RecordingRunner(r), limiter(60)
    runner.run(rl.plan_acquire())
    delays = []
    for _ in range(4):
        with pytest.raises(RateBudgetWait) as caught:
            runner.run(rl.plan_acquire(max_wait_s=0.0))
        delays.append(caught.value.delay_s)
    interval = rl.interval_ms / 1000
    assert delays == pytest.approx([interval, 2 * interval, 3 * interval, 4 * interval], abs=0.05)
    assert 0 < r.pttl(KEYS.come_back) <= 5 * rl.interval_ms + 1000  # forgotten once the line is past


def test_a_pause_longer_than_the_bound_is_refused_too() -> None:
    r = fakeredis.FakeRedis()
    r.set(KEYS.pause, "1", px=30_000)  # a 429's Retry-After of 30 s
    with pytest.raises(RateBudgetWait) as caught:
        RecordingRunner(r).run(limiter().plan_acquire(max_wait_s=1.0))
    assert 29 < caught.value.delay_s <= 30


def test_a_bound_needs_the_come_back_key() -> None:
    with pytest.raises(ValueError, match="come_back_key"):
        RecordingRunner(fakeredis.FakeRedis()).run(
            RateLimiter(KEYS.rate, KEYS.pause, 60).plan_acquire(max_wait_s=1.0))


def test_a_bounded_view_refuses_only_its_first_request_and_sends_nothing() -> None:
    r = fakeredis.FakeRedis()
    fake = FakeGenesys()
    settings = SETTINGS.model_copy(update={"genesys_rate_limit_per_minute": 60})
    client = GenesysClient(settings, r, transport=fake.transport())
    client.get_conversation("c-0")
    client.get_conversation("c-0")  # the burst is used: the next slot is about 1 s off
    with pytest.raises(RateBudgetWait):
        client.bounded(0.2).get_conversation("c-1")
    assert [req.path for req in fake.api_requests] == ["/api/v2/conversations/c-0"] * 2
    # A view whose first request went out waits for the later ones (that request may have had an effect).
    r.delete(KEYS.rate, KEYS.come_back)
    view = client.bounded(0.2)
    for n in (2, 3, 4):
        view.get_conversation(f"c-{n}")  # c-4's slot is about 1 s off: waited, not refused
    assert [req.path for req in fake.api_requests][-3:] == [f"/api/v2/conversations/c-{n}" for n in (2, 3, 4)]
    # The shared client is not bounded by its views.
    assert client._pipeline.rate_wait_max_s is None

