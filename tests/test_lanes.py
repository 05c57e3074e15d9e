"""Priority lanes (genesys.lanes): who takes an org's next request slot among parked commands, on a real
redis-server and on fakeredis. Time is moved by setting the limiter's next free slot: a "tick" makes
exactly one slot due (limit 60/min, no burst: one slot a second)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import fakeredis
import pytest
import redis

from genesys.keys import ClientKeys
from genesys.lanes import WEIGHTS, LineKeys
from genesys.ratelimit import RateBudgetWait, RateLimiter
from schemas.common import Lane
from tests.test_genesys_ratelimit import RecordingRunner

KEYS = ClientKeys.for_client("https://login.example", "lanes")
LINE = LineKeys.of(KEYS.rate).line


@pytest.fixture(params=["redis-server", "fakeredis"])
def r(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    if request.param == "fakeredis":
        yield fakeredis.FakeRedis()
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    yield client
    client.close()


def limiter() -> RateLimiter:
    return RateLimiter(KEYS.rate, KEYS.pause, 60, burst=0)


def ask(r: redis.Redis, holder: str, lane: Lane) -> bool:
    """``holder`` asks for a slot without waiting: True if it took one."""
    try:
        RecordingRunner(r).run(limiter().plan_acquire(0.0, KEYS.slot(holder), lane))
    except RateBudgetWait:
        return False
    return True


def park(r: redis.Redis, holder: str, lane: Lane) -> float:
    """``holder`` asks for a slot without waiting; returns its come-back time (s). Fails if it got one."""
    with pytest.raises(RateBudgetWait) as parked:
        RecordingRunner(r).run(limiter().plan_acquire(0.0, KEYS.slot(holder), lane))
    return parked.value.delay_s


def busy(r: redis.Redis) -> None:
    """The next slot is a few seconds off: whoever asks now is parked."""
    r.set(KEYS.rate, f"{time.time() * 1000 + 5_000:.3f}")


def tick(r: redis.Redis) -> None:
    """One slot is due now; the one after is a second off."""
    r.set(KEYS.rate, f"{time.time() * 1000 - 1:.3f}")


def handed_out(r: redis.Redis) -> list[str]:
    """Holders a due slot was handed to while parked (each then comes back and takes it)."""
    prefix = KEYS.slot("")
    found = [key.decode()[len(prefix):] for key in r.scan_iter(match=prefix + "*")]
    for holder in found:
        RecordingRunner(r).run(limiter().plan_acquire(0.0, KEYS.slot(holder)))  # back for it: taken, no wait
        assert not r.exists(KEYS.slot(holder))
    return found


def line(r: redis.Redis) -> list[str]:
    prefix = KEYS.slot("")
    return [member.decode()[len(prefix):] for member in r.zrange(LINE, 0, -1)]


def test_higher_lanes_go_first_and_each_lane_first_come_first_served(r: redis.Redis) -> None:
    busy(r)
    for holder, lane in [("b1", Lane.bulk), ("b2", Lane.bulk), ("n1", Lane.normal), ("h1", Lane.high),
                         ("b3", Lane.bulk), ("n2", Lane.normal), ("h2", Lane.high)]:
        park(r, holder, lane)
    assert line(r) == ["h1", "h2", "n1", "n2", "b1", "b2", "b3"]
    served = []
    for _ in range(7):
        tick(r)
        park(r, "late", Lane.bulk)  # any caller hands the due slot to the head of the line
        served += handed_out(r)
    assert served == ["h1", "h2", "n1", "n2", "b1", "b2", "b3"]
    assert line(r) == ["late"]


def test_a_high_command_behind_a_parked_bulk_backlog_is_told_the_next_slot(r: redis.Redis) -> None:
    busy(r)
    interval = limiter().interval_ms / 1000
    bulk = [park(r, f"b{n}", Lane.bulk) for n in range(50)]
    assert bulk[-1] == pytest.approx(bulk[0] + 49 * interval, abs=0.1)  # each after the ones before it
    high = park(r, "h", Lane.high)
    assert high == pytest.approx(bulk[0], abs=0.1)  # the first bulk command's turn, not the 51st
    tick(r)
    park(r, "b0", Lane.bulk)  # b0 back (early): the due slot goes to the high command, not to b0
    assert handed_out(r) == ["h"]


def test_the_caller_first_in_line_takes_a_due_slot_itself_and_a_later_one_does_not_take_its_turn(
        r: redis.Redis) -> None:
    busy(r)
    park(r, "first", Lane.bulk)
    tick(r)
    assert ask(r, "first", Lane.bulk)  # back on time: takes the slot itself
    assert line(r) == [] and handed_out(r) == []
    busy(r)
    park(r, "parked", Lane.bulk)
    tick(r)
    park(r, "newcomer", Lane.bulk)  # the due slot is the parked command's: kept for it
    assert handed_out(r) == ["parked"] and line(r) == ["newcomer"]


def test_bulk_is_not_starved_by_a_stream_of_high_commands(r: redis.Redis) -> None:
    busy(r)
    park(r, "bulk-first", Lane.bulk)
    park(r, "bulk-second", Lane.bulk)
    served: list[str] = []
    for n in range(60):  # a high command arrives for every slot: the high lane alone would use the budget
        park(r, f"h{n}", Lane.high)
        tick(r)
        if ask(r, f"h{n}", Lane.high):  # back: takes the due slot if first in line, else hands it to the first
            served.append(f"h{n}")
        served += handed_out(r)
    bound = sum(WEIGHTS.values()) + 1  # the starvation bound the module states, in slots
    assert "bulk-first" in served[:bound]
    first = served.index("bulk-first")
    assert served.index("bulk-second") - first <= bound
    assert all(name.startswith("h") for name in served[:first])  # before it: high commands only


def test_a_command_back_after_its_handed_out_slot_lapsed_keeps_its_turn(r: redis.Redis) -> None:
    busy(r)
    park(r, "slow", Lane.bulk)
    park(r, "next", Lane.bulk)
    tick(r)
    park(r, "next", Lane.bulk)  # hands the due slot to "slow", which is not back yet
    assert r.exists(KEYS.slot("slow"))
    r.set(KEYS.slot("slow"), f"{time.time() * 1000 - 5_000:.3f}")  # ... and comes back 5 s after it
    busy(r)
    park(r, "slow", Lane.bulk)  # the lapsed slot is not used late, but "slow" is first in line again
    assert line(r) == ["slow", "next"]
