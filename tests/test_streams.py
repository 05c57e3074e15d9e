"""Consumer-group reading on the real redis-server: replay, takeover, delivery counts, trimmed entries,
with the sync runner (ingest, webhook) and the async one (guest router)."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio as aredis

from genesys.effects import AsyncRunner, SyncRunner
from workers.streams import ConsumerGroup

STREAM, GROUP = "test:stream", "test-group"


def group(consumer: str, start: str = "0") -> ConsumerGroup:
    return ConsumerGroup(STREAM, GROUP, consumer, count=10, start=start)


def test_creating_the_group_twice_is_harmless_and_start_says_where_it_begins(redis_client: redis.Redis) -> None:
    run = SyncRunner(redis_client).run
    redis_client.xadd(STREAM, {"n": "before"})
    run(group("a", start="$").create())
    run(group("a").create())
    redis_client.xadd(STREAM, {"n": "after"})
    assert [e.fields for e in run(group("a").new(None))] == [{"n": "after"}]


def test_unacknowledged_entries_are_replayed_to_their_consumer_with_delivery_counts(
        redis_client: redis.Redis) -> None:
    run = SyncRunner(redis_client).run
    run(group("a").create())
    ids = [redis_client.xadd(STREAM, {"n": str(i)}) for i in range(3)]
    new = run(group("a").new(None))
    assert [(e.entry_id, e.deliveries) for e in new] == [(i, 1) for i in ids]
    redis_client.xack(STREAM, GROUP, ids[0])
    replayed = run(group("a").pending())
    assert [(e.entry_id, e.fields["n"], e.deliveries) for e in replayed] == [(ids[1], "1", 2), (ids[2], "2", 2)]
    assert run(group("b").pending()) == []


def test_a_dead_consumers_entries_are_claimed_in_order_once_idle(redis_client: redis.Redis) -> None:
    run = SyncRunner(redis_client).run
    run(group("dead").create())
    ids = [redis_client.xadd(STREAM, {"n": str(i)}) for i in range(25)]  # more than one XAUTOCLAIM batch
    run(group("dead").new(None))
    run(group("dead").new(None))
    run(group("dead").new(None))
    assert run(group("alive").claim(idle_ms=60_000)) == []
    claimed = run(group("alive").claim(idle_ms=0))
    assert [e.entry_id for e in claimed] == ids
    assert {e.deliveries for e in claimed} == {2}


def test_an_entry_trimmed_while_pending_is_acknowledged_not_returned(redis_client: redis.Redis) -> None:
    run = SyncRunner(redis_client).run
    run(group("a").create())
    gone, kept = redis_client.xadd(STREAM, {"n": "0"}), redis_client.xadd(STREAM, {"n": "1"})
    run(group("a").new(None))
    redis_client.xdel(STREAM, gone)
    assert [e.entry_id for e in run(group("a").pending())] == [kept]
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 1


def test_the_async_runner_reads_the_same_way_with_undecoded_replies(redis_url: str) -> None:
    async def scenario() -> None:
        client = aredis.Redis.from_url(redis_url)  # bytes replies
        run = AsyncRunner(client).run
        await run(group("router").create())
        entry_id = (await client.xadd(STREAM, {"command_id": "c1"})).decode()
        [entry] = await run(group("router").new(10))
        assert (entry.entry_id, entry.fields, entry.deliveries) == (entry_id, {"command_id": "c1"}, 1)
        [claimed] = await run(group("next-router").claim(idle_ms=0))
        assert (claimed.entry_id, claimed.deliveries) == (entry_id, 2)
        await client.aclose()

    asyncio.run(scenario())
