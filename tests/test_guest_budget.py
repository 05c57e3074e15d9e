"""The guest fleet's connection budget (workers/guest/budget.py): the token bucket script on fakeredis and
on a real redis-server, and the local queue that hands slots out in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError

from workers.guest import budget as budget_module
from workers.guest.budget import MIN_WAIT_S, TAKE, ConnectionBudget, Ticket
from workers.guest.keys import connect_budget

pytestmark = pytest.mark.anyio

ORG, DEPLOYMENT = "default", "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607"
KEY = connect_budget(ORG, DEPLOYMENT)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["fakeredis", "redis-server"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[aredis.Redis]:
    if request.param == "fakeredis":
        fake = fakeredis.aioredis.FakeRedis()
        yield fake
        await fake.aclose()
        return
    real = aredis.Redis.from_url(request.getfixturevalue("redis_url"))
    yield real
    await real.aclose()


async def take(client: aredis.Redis, wanted: int, *, per_minute: float = 600, burst: int = 5) -> tuple[int, int]:
    granted, wait_ms = await client.register_script(TAKE)(keys=[KEY], args=[repr(per_minute / 60_000), burst, wanted])
    return int(granted), int(wait_ms)


# --- the script ------------------------------------------------------------------------------------------


async def test_a_new_bucket_grants_its_burst_then_says_when_the_next_slot_comes(client: aredis.Redis) -> None:
    assert await take(client, 3) == (3, 0)
    granted, wait_ms = await take(client, 10)
    assert granted == 2  # the burst of 5, less the 3 taken
    assert 1 <= wait_ms <= 100  # 600 a minute: one every 100 ms


async def test_the_bucket_refills_at_the_rate_and_never_beyond_the_burst(client: aredis.Redis) -> None:
    assert await take(client, 5, per_minute=60_000) == (5, 0)  # empty it; 1,000 a second
    await asyncio.sleep(0.05)  # time itself is what refills the bucket: 50 slots' worth
    granted, _ = await take(client, 100, per_minute=60_000)
    assert granted == 5, "refilled, but never past the burst"


async def test_the_bucket_expires_when_idle(client: aredis.Redis) -> None:
    await take(client, 1)
    ttl_ms = await client.pttl(KEY)
    assert 0 < ttl_ms <= 5 / (600 / 60_000) + 60_000


async def test_two_workers_share_one_bucket(redis_url: str) -> None:
    """Every worker takes from the same bucket: together they get the rate, not the rate each."""
    workers = [aredis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        first, _ = await take(workers[0], 4)
        second, _ = await take(workers[1], 4)
        assert (first, second) == (4, 1)  # a burst of 5 for both together
    finally:
        for w in workers:
            await w.aclose()


# --- the local queue -------------------------------------------------------------------------------------


class FakeBucket:
    """Grants a fixed number of slots per call; records the calls."""

    def __init__(self, per_call: int, fail_first: int = 0) -> None:
        self.per_call = per_call
        self.fail_first = fail_first
        self.calls: list[int] = []

    async def __call__(self, *, keys: list[str], args: list[Any]) -> list[int]:
        self.calls.append(int(args[2]))
        if self.fail_first:
            self.fail_first -= 1
            raise RedisConnectionError("Redis is down")
        granted = min(self.per_call, int(args[2]))
        return [granted, 0 if granted == int(args[2]) else 10]


async def granted_order(tickets: dict[str, Ticket]) -> list[str]:
    order: list[str] = []

    async def wait(name: str, ticket: Ticket) -> None:
        await ticket.wait()
        order.append(name)

    await asyncio.wait_for(asyncio.gather(*(wait(n, t) for n, t in tickets.items())), 5)
    return order


async def test_sessions_with_commands_go_first_then_the_rest_in_arrival_order() -> None:
    budget = ConnectionBudget(FakeBucket(per_call=1), per_minute=900, burst=1)
    tickets = {name: budget.ticket(ORG, DEPLOYMENT, urgent=name.startswith("cmd"))
               for name in ("idle-1", "cmd-1", "idle-2", "cmd-2", "idle-3")}
    assert await granted_order(tickets) == ["cmd-1", "cmd-2", "idle-1", "idle-2", "idle-3"]


async def test_a_command_arriving_during_the_wait_moves_the_session_ahead() -> None:
    budget = ConnectionBudget(FakeBucket(per_call=1), per_minute=900, burst=1)
    tickets = {name: budget.ticket(ORG, DEPLOYMENT, urgent=False) for name in ("a", "b", "c")}
    tickets["c"].promote()
    tickets["c"].promote()  # twice is once
    assert await granted_order(tickets) == ["c", "a", "b"]


async def test_one_call_asks_for_every_waiting_session() -> None:
    bucket = FakeBucket(per_call=100)
    budget = ConnectionBudget(bucket, per_minute=900, burst=100)
    tickets = {str(n): budget.ticket(ORG, DEPLOYMENT, urgent=False) for n in range(30)}
    await granted_order(tickets)
    assert bucket.calls == [30]
    assert budget.waiting() == 0


async def test_a_session_that_stops_waiting_leaves_the_queue() -> None:
    bucket = FakeBucket(per_call=1)
    budget = ConnectionBudget(bucket, per_minute=900, burst=1)
    gone = budget.ticket(ORG, DEPLOYMENT, urgent=True)
    stays = budget.ticket(ORG, DEPLOYMENT, urgent=False)
    gone.future.cancel()
    await asyncio.wait_for(stays.wait(), 5)  # the slot is not handed to the one who left
    assert budget.waiting() == 0


async def test_while_redis_is_down_sessions_wait_and_then_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget_module, "RETRY_S", 0.01)
    bucket = FakeBucket(per_call=5, fail_first=3)
    budget = ConnectionBudget(bucket, per_minute=900, burst=5)
    ticket = budget.ticket(ORG, DEPLOYMENT, urgent=False)
    await asyncio.wait_for(ticket.wait(), 5)
    assert len(bucket.calls) == 4, "three failed asks, then the slot"


class RecordedSleeps:
    """The budget module's ``asyncio`` with the pump's sleeps noted (they still happen)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.seconds.append(seconds)
        await asyncio.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


async def test_paced_at_the_rate_on_a_real_bucket(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps = RecordedSleeps()
    monkeypatch.setattr(budget_module, "asyncio", sleeps)
    client = aredis.Redis.from_url(redis_url)
    try:
        budget = ConnectionBudget(client.register_script(TAKE), per_minute=600, burst=2)  # 10 a second
        started = time.monotonic()
        tickets = {str(n): budget.ticket(ORG, DEPLOYMENT, urgent=False) for n in range(7)}
        await granted_order(tickets)
        elapsed = time.monotonic() - started
        assert elapsed >= 0.45, elapsed  # 2 at once, then 5 more at 100 ms each: never faster
        # ...and no slower than the bucket: each sleep lasts until a slot is due, so together they fit in the
        # 500 ms the 5 slots take, however busy the machine; per sleep, plus the floor of a sleep and 2 ms (the
        # script floors Redis' clock to whole ms and rounds a wait up to them).
        assert sleeps.seconds and sum(sleeps.seconds) <= 0.5 + len(sleeps.seconds) * (MIN_WAIT_S + 0.002)
        await budget.aclose()
    finally:
        await client.aclose()
