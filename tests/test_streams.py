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


def test_trim_drops_only_what_every_group_handed_on(redis_client: redis.Redis) -> None:
    """The commands stream holds customer text: handed-on entries go, pending or unread ones stay."""
    run = SyncRunner(redis_client).run
    run(group("a").create())
    ids = [redis_client.xadd(STREAM, {"n": str(i)}, id=f"{1000 + i}-0") for i in range(6)]
    delivered = run(ConsumerGroup(STREAM, GROUP, "a", count=4).new(None))
    redis_client.xack(STREAM, GROUP, ids[0], ids[1], ids[3])  # ids[2] still pending; 4 and 5 never read
    assert [e.entry_id for e in delivered] == ids[:4]
    assert run(group("a").trim(older_than_ms=10_000)) == 2  # 0 and 1; the pending 2 holds the rest
    redis_client.xack(STREAM, GROUP, ids[2])
    assert run(group("a").trim(older_than_ms=1_003)) == 1  # only what is older than the cut-off
    assert run(group("a").trim(older_than_ms=10_000)) == 1  # up to the last delivered (3): 4, 5 unread
    assert [e[0] for e in redis_client.xrange(STREAM)] == ids[4:]


def test_trim_waits_for_every_group_and_touches_a_stream_nobody_reads_not_at_all(redis_client: redis.Redis) -> None:
    run = SyncRunner(redis_client).run
    redis_client.xadd(STREAM, {"n": "0"}, id="1000-0")
    assert run(group("a").trim(older_than_ms=10_000)) == 0  # no group: nobody said it is done with it
    run(group("a").create())
    run(ConsumerGroup(STREAM, "other-group", "b", count=10).create())
    [entry] = run(group("a").new(None))
    redis_client.xack(STREAM, GROUP, entry.entry_id)
    assert run(group("a").trim(older_than_ms=10_000)) == 0  # the other group has not read it yet
