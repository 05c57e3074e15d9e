"""The multiplexed Redis connection (workers.guest.redis_mux) and the guest worker's batcher on top of it,
against a real redis-server: replies reach the right caller through concurrency, error replies,
cancellation, a killed connection and a flushed script cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from workers.guest.batch import RedisBatcher, pack_with_hiredis
from workers.guest.redis_mux import RedisMux

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture(params=[pytest.param({}, id="asyncio"), pytest.param({"use_uvloop": True}, id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    """Both event loops: the guest worker runs on uvloop, whose transports the connection takes over."""
    return "asyncio", request.param


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[aredis.ConnectionPool]:
    pool = aredis.ConnectionPool.from_url(redis_url, decode_responses=True)
    pack_with_hiredis(pool)  # as the guest worker's pool
    yield pool
    await pool.aclose()


@pytest.fixture
async def mux(pool: aredis.ConnectionPool) -> AsyncIterator[RedisMux]:
    mux = RedisMux(lambda: pool.connection_class(**pool.connection_kwargs))
    yield mux
    await mux.aclose()


async def test_concurrent_callers_each_get_their_own_replies(mux: RedisMux) -> None:
    async def caller(i: int) -> list[object]:
        return await mux.execute([("SET", f"k{i}", f"v{i}"), ("GET", f"k{i}"), ("INCRBY", "total", i)])

    replies = await asyncio.gather(*(caller(i) for i in range(300)))
    for i, (ok, value, _total) in enumerate(replies):
        assert (ok, value) == ("OK", f"v{i}")  # raw replies: no redis-py response callbacks
    assert sorted(total for _ok, _value, total in replies)[-1] == sum(range(300))


async def test_an_error_reply_answers_only_its_own_command(mux: RedisMux) -> None:
    await mux.execute([("SET", "text", "not a hash")])
    first, wrong, last = await mux.execute([("PING",), ("HGET", "text", "field"), ("ECHO", "after")])
    assert first == "PONG" and last == "after"
    assert isinstance(wrong, ResponseError) and "WRONGTYPE" in str(wrong)
    assert await mux.execute([("GET", "text")]) == ["not a hash"]


async def test_a_cancelled_caller_does_not_shift_the_replies_of_the_next(mux: RedisMux) -> None:
    blocked = asyncio.create_task(mux.execute([("BLPOP", "nothing-here", 0.3)]))
    ready = asyncio.create_task(mux.execute([("ECHO", "mine")]))
    await asyncio.sleep(0)  # both written; the BLPOP's reply (nil, in 0.3 s) comes first
    blocked.cancel()
    assert await ready == ["mine"]
    assert await mux.execute([("ECHO", "next")]) == ["next"]


async def test_a_killed_connection_fails_its_callers_and_the_next_call_reconnects(mux: RedisMux,
                                                                                  redis_url: str) -> None:
    (first_id,) = await mux.execute([("CLIENT", "ID")])
    blocked = asyncio.create_task(mux.execute([("BLPOP", "nothing-here", 5)]))
    queued = asyncio.create_task(mux.execute([("ECHO", "behind it")]))
    await asyncio.sleep(0)
    admin = redis.Redis.from_url(redis_url)
    try:
        await asyncio.to_thread(admin.client_kill_filter, _id=first_id)
    finally:
        admin.close()
    for call in (blocked, queued):
        with pytest.raises(RedisConnectionError):
            await call
    (second_id,) = await mux.execute([("CLIENT", "ID")])
    assert second_id != first_id
    assert await mux.execute([("ECHO", "again")]) == ["again"]


async def test_replies_late_beyond_the_socket_timeout_fail_the_connection(pool: aredis.ConnectionPool) -> None:
    mux = RedisMux(lambda: pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": 0.2}))
    try:
        (first_id,) = await mux.execute([("CLIENT", "ID")])
        with pytest.raises(RedisTimeoutError):
            await mux.execute([("BLPOP", "nothing-here", 3)])  # Redis says nothing for 3 s
        (second_id,) = await mux.execute([("CLIENT", "ID")])
        assert second_id != first_id
    finally:
        await mux.aclose()


async def test_a_closed_mux_refuses_calls(mux: RedisMux) -> None:
    assert await mux.execute([("PING",)]) == ["PONG"]
    await mux.aclose()
    with pytest.raises(RedisConnectionError):
        await mux.execute([("PING",)])


async def test_batcher_calls_scripts_and_reloads_them_after_a_flush(pool: aredis.ConnectionPool) -> None:
    client = aredis.Redis(connection_pool=pool)
    batcher = RedisBatcher(client)
    incr = batcher.script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    await batcher.load_scripts()
    try:
        assert sorted(await asyncio.gather(*(incr(["n"], [1]) for _ in range(50)))) == list(range(1, 51))
        await client.script_flush()
        assert await incr(["n"], [10]) == 60
        with pytest.raises(ResponseError):
            await incr([], [1])  # a script error fails its caller only
        assert await incr(["n"], [1]) == 61
    finally:
        await batcher.aclose()


async def test_a_batch_window_gathers_calls_made_over_several_loop_turns(pool: aredis.ConnectionPool) -> None:
    client = aredis.Redis(connection_pool=pool)
    batcher = RedisBatcher(client, window_s=0.05)
    echo = batcher.script("return ARGV[1]")
    await batcher.load_scripts()
    writes: list[int] = []
    submit = batcher._mux.submit

    def counted(commands: list[tuple[object, ...]]) -> asyncio.Future[list[object]]:
        writes.append(len(commands))
        return submit(commands)

    batcher._mux.submit = counted  # type: ignore[method-assign]

    async def later(turns: int, text: str) -> object:
        for _ in range(turns):
            await asyncio.sleep(0)
        return await echo([], [text])

    try:
        assert await asyncio.gather(*(later(turns, f"t{turns}") for turns in range(5))) == [
            f"t{turns}" for turns in range(5)]
        assert writes == [5]
    finally:
        await batcher.aclose()


async def test_bytes_that_are_no_reply_fail_the_waiting_call_and_the_next_call_reconnects(mux: RedisMux) -> None:
    (first_id,) = await mux.execute([("CLIENT", "ID")])
    link = mux._link
    assert link is not None and link.taken_over
    blocked = asyncio.create_task(mux.execute([("BLPOP", "nothing-here", 5)]))
    await asyncio.sleep(0)
    link.received(b"!not RESP\r\n")  # as if the server had sent it
    with pytest.raises(InvalidResponse):
        await blocked
    (second_id,) = await mux.execute([("CLIENT", "ID")])
    assert second_id != first_id


async def test_a_reply_nobody_asked_for_fails_the_link(mux: RedisMux) -> None:
    (first_id,) = await mux.execute([("CLIENT", "ID")])
    link = mux._link
    assert link is not None and not link.waiting
    link.received(b"+stray\r\n")
    assert isinstance(link.broken, InvalidResponse)
    (second_id,) = await mux.execute([("CLIENT", "ID")])
    assert second_id != first_id
