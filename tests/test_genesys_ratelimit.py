"""Fleet-wide rate limiter: GCRA slot reservation in Lua, and the 429 pause.

The limiter reads Redis' clock, never the process's: on fakeredis that clock is the test's
(``redis_clock``), so waits are exact; on the real Redis the test checks the slots the limiter reserved
(read in the same transaction), not when busy threads got round to noting them."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable

import fakeredis
import pytest
import redis
from pydantic import SecretStr

from genesys.client import AsyncGenesysClient, GenesysClient
from genesys.effects import AsyncRunner, Effect, Pause, RedisCommand, SyncRunner
from genesys.errors import GenesysError
from genesys.keys import ClientKeys
from genesys.ratelimit import RateLimiter
from genesys.regions import resolve
from parley.settings import Settings
from tests.support.genesys_mock import FakeGenesys, error
from tests.support.redis_clock import RedisClock

SETTINGS = Settings(genesys_region="eu_west_1", genesys_client_id="c", genesys_client_secret=SecretStr("s"))
KEYS = ClientKeys.for_client(resolve(SETTINGS).login_url, "c")


class RecordingRunner(SyncRunner):
    """Runs Redis effects for real, records pauses instead of sleeping them; ``on_pause(n)`` lets a
    test make the world change during the n-th pause (as time passing would). With ``clock``, Redis'
    clock moves on by each pause (the pause is "slept" on the test's clock)."""

    def __init__(self, r: redis.Redis, on_pause: Callable[[int], None] | None = None,
                 clock: RedisClock | None = None) -> None:
        super().__init__(r)
        self.pauses: list[float] = []
        self._on_pause = on_pause
        self._clock = clock

    def _perform(self, effect: Effect) -> object:
        if isinstance(effect, Pause):
            self.pauses.append(effect.seconds)
            if self._clock:
                self._clock.advance(effect.seconds)
            if self._on_pause:
                self._on_pause(len(self.pauses))
            return None
        return super()._perform(effect)


class SlotRecordingRunner(SyncRunner):
    """Runs a plan for real (it sleeps) and notes, on Redis' clock, the slot each reservation took: the
    rate key read in the same transaction as the script holds the reserved slot plus one interval."""

    def __init__(self, r: redis.Redis, interval_ms: float) -> None:
        super().__init__(r)
        self._r = r
        self._interval_ms = interval_ms
        self.slots_ms: list[float] = []

    def _perform(self, effect: Effect) -> object:
        if not (isinstance(effect, RedisCommand) and effect.name in ("evalsha", "eval")):
            return super()._perform(effect)
        transaction = self._r.pipeline(transaction=True)
        getattr(transaction, effect.name)(*effect.args, **effect.kwargs)
        transaction.get(KEYS.rate)
        reply, next_slot_ms = transaction.execute()
        paused_ms = reply[0]
        if paused_ms == 0:  # a slot was reserved (no 429 pause)
            self.slots_ms.append(float(next_slot_ms) - self._interval_ms)
        return reply


def limiter(limit: int = 60, burst: int | None = 0) -> RateLimiter:
    return RateLimiter(KEYS.rate, KEYS.pause, limit, burst=burst)


# --- Arithmetic ----------------------------------------------------------------------------------
def test_interval_keeps_every_sliding_minute_under_the_limit() -> None:
    rl = limiter(300, burst=None)
    assert rl.burst == 6
    # At most 1 + burst + 60 s / interval admissions fit in any minute.
    assert 1 + rl.burst + 60_000 / rl.interval_ms < 300
    assert rl.sustained_per_minute / 300 > 0.95


@pytest.mark.parametrize("limit", [1, 2, 10, 300, 600, 3000])
def test_bound_holds_for_any_limit(limit: int) -> None:
    rl = limiter(limit, burst=None)
    assert 1 + rl.burst + int(60_000 / rl.interval_ms) <= limit


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        limiter(0)


# --- GCRA logic (fakeredis on the test's clock; waits are recorded, not slept) -------------------
MS = 0.001  # the script rounds a wait up to whole milliseconds


def test_consecutive_calls_are_spaced_by_the_interval(redis_clock: RedisClock) -> None:
    runner = RecordingRunner(fakeredis.FakeRedis())
    rl = limiter(60, burst=0)
    for _ in range(4):  # at one instant: each call reserves the slot after the last one reserved
        runner.run(rl.plan_acquire())
    interval = rl.interval_ms / 1000
    assert runner.pauses == pytest.approx([interval, 2 * interval, 3 * interval], abs=MS)


def test_a_caller_that_waits_its_turn_is_admitted_one_interval_after_the_last(redis_clock: RedisClock) -> None:
    runner = RecordingRunner(fakeredis.FakeRedis(), on_pause=lambda _: None, clock=redis_clock)
    rl = limiter(60, burst=0)
    for _ in range(4):
        runner.run(rl.plan_acquire())
    assert runner.pauses == pytest.approx([rl.interval_ms / 1000] * 3, abs=MS)


def test_burst_calls_pass_without_waiting(redis_clock: RedisClock) -> None:
    runner = RecordingRunner(fakeredis.FakeRedis())
    rl = limiter(300, burst=3)
    for _ in range(4):
        runner.run(rl.plan_acquire())
    assert runner.pauses == []  # 1 + burst immediate admissions
    runner.run(rl.plan_acquire())
    assert runner.pauses == [pytest.approx(rl.interval_ms / 1000, abs=MS)]


def test_pause_blocks_everyone_for_retry_after(redis_clock: RedisClock) -> None:
    r = fakeredis.FakeRedis()
    rl = limiter(60, burst=0)
    RecordingRunner(r).run(rl.plan_pause(2.5))
    assert r.pttl(KEYS.pause) == 2500
    runner = RecordingRunner(r, clock=redis_clock)  # the pause runs out while the caller waits it out
    runner.run(rl.plan_acquire())
    assert runner.pauses == [pytest.approx(2.5, abs=MS)]
    assert r.pttl(KEYS.pause) <= 0  # the caller went on when the pause ran out, not before


def test_a_pause_is_extended_never_shortened(redis_clock: RedisClock) -> None:
    r = fakeredis.FakeRedis()
    runner = RecordingRunner(r)
    rl = limiter()
    runner.run(rl.plan_pause(10))
    runner.run(rl.plan_pause(1))
    assert r.pttl(KEYS.pause) == 10_000
    runner.run(rl.plan_pause(20))
    assert r.pttl(KEYS.pause) == 20_000


def test_a_pause_set_while_waiting_for_a_slot_is_honoured(redis_clock: RedisClock) -> None:
    r = fakeredis.FakeRedis()
    rl = limiter(60, burst=0)
    RecordingRunner(r).run(rl.plan_acquire())  # takes the free slot; the next one waits

    def world(n: int) -> None:
        if n == 1:
            r.set(KEYS.pause, "1", px=5000)  # a 429 elsewhere, during our wait for a slot
        else:
            r.delete(KEYS.pause)  # ...which then runs out

    runner = RecordingRunner(r, on_pause=world)
    runner.run(rl.plan_acquire())
    # slot wait, then the pause, then a fresh slot (the one waited for was given up: the next is two off)
    interval = rl.interval_ms / 1000
    assert runner.pauses == pytest.approx([interval, 5.0, 2 * interval], abs=MS)


def test_async_runner_uses_the_same_plan() -> None:
    async def main() -> list[float]:
        r = fakeredis.FakeAsyncRedis()
        rl = limiter(60_000, burst=0)  # 1 ms slots: real sleeps stay tiny
        started = time.perf_counter()
        for _ in range(5):
            await AsyncRunner(r).run(rl.plan_acquire())
        return [time.perf_counter() - started, float(await r.exists(KEYS.rate))]

    elapsed, exists = asyncio.run(main())
    assert exists == 1
    assert elapsed >= 4 * limiter(60_000, burst=0).interval_ms / 1000 * 0.9


# --- Many threads on a real Redis ----------------------------------------------------------------
def test_threads_on_real_redis_never_exceed_the_rate(redis_url: str) -> None:
    rl = limiter(1200, burst=0)  # ~51 ms slots
    runners: list[SlotRecordingRunner] = []
    early_ms: list[float] = []  # how long before its slot an acquire returned (never, if it waits it out)
    lock = threading.Lock()
    start = threading.Barrier(6)

    def work() -> None:
        runner = SlotRecordingRunner(redis.Redis.from_url(redis_url), rl.interval_ms)
        start.wait()
        for _ in range(5):
            runner.run(rl.plan_acquire())
            returned_ms = time.time() * 1000  # the local redis-server's TIME reads the same clock
            with lock:
                early_ms.append(runner.slots_ms[-1] - returned_ms)
        with lock:
            runners.append(runner)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    slots = sorted(slot for runner in runners for slot in runner.slots_ms)
    assert len(slots) == 30
    # 30 slots, reserved one interval apart by six threads racing for them.
    interval_ms = rl.interval_ms - 0.01  # as the rate key keeps it (3 decimals)
    assert min(later - earlier for earlier, later in itertools.pairwise(slots)) >= interval_ms
    assert slots[-1] - slots[0] >= 29 * interval_ms
    # No window holds more than its share.
    window = 10 * interval_ms
    busiest = max(sum(1 for t in slots if start_t <= t < start_t + window) for start_t in slots)
    assert busiest <= 10
    # And no caller went before its slot: each waited it out (a late one is the scheduler's, not ours).
    assert max(early_ms) <= 1.0  # clock reads a millisecond apart at most


# --- Through the client --------------------------------------------------------------------------
def test_every_oauth_call_takes_a_slot_and_guest_calls_do_not() -> None:
    r = fakeredis.FakeRedis()
    fake = FakeGenesys()
    c = GenesysClient(SETTINGS, r, transport=fake.transport())
    c.get_conversation("c-1")
    first = float(r.get(KEYS.rate))
    c.get_message_conversation("c-1")
    second = float(r.get(KEYS.rate))
    assert second > first  # the second OAuth call reserved the next slot
    c.get_guest_chat_member("conv-1", "member-1", jwt="guest.jwt")
    assert float(r.get(KEYS.rate)) == second


@pytest.mark.parametrize(
    ("retry_after", "expected_s"),
    [("7", 7.0), (None, 1.0)],
)
def test_a_429_pauses_the_client_everywhere(retry_after: str | None, expected_s: float) -> None:
    r = fakeredis.FakeRedis()
    fake = FakeGenesys()
    headers = {"Retry-After": retry_after} if retry_after else {}
    fake.queue(
        "GET",
        "/api/v2/conversations/{id}",
        error(429, "too.many.requests.retry.after", "Rate limit exceeded", headers=headers),
    )
    with pytest.raises(GenesysError) as caught:
        GenesysClient(SETTINGS, r, transport=fake.transport()).get_conversation("c-1")
    assert caught.value.status == 429
    assert expected_s * 1000 - 100 < r.pttl(KEYS.pause) <= expected_s * 1000
    # Any process using the same client now waits out the pause before its next call.
    runner = RecordingRunner(r, on_pause=lambda _: r.delete(KEYS.pause))
    runner.run(limiter().plan_acquire())
    assert runner.pauses[0] == pytest.approx(expected_s, abs=0.1)


def test_guest_429_does_not_pause_the_oauth_client() -> None:
    r = fakeredis.FakeRedis()
    fake = FakeGenesys()
    fake.queue(
        "GET",
        "/api/v2/webchat/guest/conversations/{id}/members/{mid}",
        error(429, "too.many.requests.retry.after", "Rate limit exceeded", headers={"Retry-After": "3"}),
    )
    with pytest.raises(GenesysError):
        GenesysClient(SETTINGS, r, transport=fake.transport()).get_guest_chat_member("c", "m", jwt="j")
    assert r.exists(KEYS.pause) == 0


def test_async_client_shares_limiter_and_token_with_sync_client() -> None:
    server = fakeredis.FakeServer()
    fake = FakeGenesys()
    GenesysClient(SETTINGS, fakeredis.FakeRedis(server=server), transport=fake.transport()).get_conversation("c")

    async def main() -> str | None:
        async with AsyncGenesysClient(
            SETTINGS, fakeredis.FakeAsyncRedis(server=server), transport=fake.transport()
        ) as c:
            return (await c.get_conversation("c")).id

    assert asyncio.run(main()) == "conv-1"
    assert fake.token_requests == 1
