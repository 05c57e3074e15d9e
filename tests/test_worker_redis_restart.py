"""A Celery worker rides out Redis restarts while it holds unacked messages (issue 10, defect 3).

Stock kombu 5.7 ended the worker (rc 1, AttributeError in ``_connparams``) when Redis restarted while the
consumer held unacked messages with a BRPOP in flight, and even when it survived, the messages it held
stayed in Redis's unacked hash until the visibility timeout. Here: a real redis-server with AOF, a real
``celery worker`` with Parley's app (concurrency above the commands held, so the consumer keeps a BRPOP in
flight), Redis restarted several times with commands running; the worker must stay up, the held commands
must come back at once, and every command must end exactly once, in events and in Genesys.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from parley.app.redis_server import RedisServer
from tasks.transport import TRANSPORT
from tests.support.pipeline import TERMINAL, Pipeline, running_pipeline
from tests.test_reliability_integration import open_conversations, send

pytestmark = pytest.mark.integration

RESTARTS = 3
HELD_PER_RESTART = 2
AGENTLESS = "/api/v2/conversations/messages/agentless"
VISIBILITY_TIMEOUT_S = 60  # harness.processes.parley_env
BACK_WITHIN_S = VISIBILITY_TIMEOUT_S / 2
"""Held commands must finish this soon after a restart: well before the visibility timeout would bring
their messages back (and the sweeper's re-dispatch is pushed out of the way below)."""


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    # Concurrency 4 > the 2 commands held per restart: the consumer keeps a BRPOP in flight while it holds
    # them, the state that ended the worker. Parley's stall sweeper would re-dispatch a lost command after
    # 20 s in the default test setup; 300 s keeps it from hiding messages the transport failed to restore.
    with running_pipeline(tmp_path, celery_concurrency=4, PARLEY_STALL_REDISPATCH_S="300") as p:
        yield p


def wait_until(pipeline: Pipeline, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it holds, waking on any event (at most every 50 ms); fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        pipeline.client.xread({"parley:events": "$"}, block=50)


def states(pipeline: Pipeline, commands: list[dict[str, Any]]) -> dict[str, str | None]:
    """The command record state of each command, by idempotency key (None: not accepted yet)."""
    wanted = {c["idempotency_key"] for c in commands}
    found: dict[str, str | None] = dict.fromkeys(wanted)
    for record in pipeline.client.scan_iter("parley:cmd:*", count=1000):
        key, state = pipeline.client.hmget(record, "idempotency_key", "state")
        if key in wanted:
            found[key] = state
    return found


def terminal_events(pipeline: Pipeline, command: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in pipeline.events_for(command["idempotency_key"]) if e["type"] in TERMINAL]


def holding(pipeline: Pipeline, commands: list[dict[str, Any]]) -> Callable[[], bool]:
    """All ``commands`` are running, so the worker holds their messages unacked (or the worker exited)."""
    celery = pipeline.processes["celery"]
    return lambda: celery.poll() is not None or (set(states(pipeline, commands).values()) == {"running"}
                                                 and pipeline.client.hlen("unacked") >= len(commands))


def finished(pipeline: Pipeline, commands: list[dict[str, Any]]) -> Callable[[], bool]:
    """All ``commands`` ended (or the worker exited)."""
    celery = pipeline.processes["celery"]
    return lambda: celery.poll() is not None or all(terminal_events(pipeline, c) for c in commands)


def assert_alive(pipeline: Pipeline, when: str) -> None:
    celery = pipeline.processes["celery"]
    log = (pipeline.log_dir / "celery.log").read_text(errors="replace")[-3000:]
    assert celery.poll() is None, f"the Celery worker exited (rc {celery.returncode}) {when}:\n{log}"


def test_worker_survives_redis_restarts_and_restores_the_messages_it_held(pipeline: Pipeline) -> None:
    customers = [str(uuid.uuid4()) for _ in range(RESTARTS * HELD_PER_RESTART)]
    conversations = open_conversations(pipeline, customers)  # before: run to completion with Redis up
    # A slow Genesys keeps each command running (its message unacked) long enough to restart Redis under it.
    pipeline.fault(method="POST", path=AGENTLESS, latency_ms=1500)
    submitted: list[dict[str, Any]] = []
    for restart in range(1, RESTARTS + 1):
        group = customers[(restart - 1) * HELD_PER_RESTART:restart * HELD_PER_RESTART]
        held = [send(c, f"held across restart {restart}") for c in group]
        for command in held:
            pipeline.submit(command)
        wait_until(pipeline, holding(pipeline, held), 30, f"the worker to hold {len(held)} running commands")
        assert_alive(pipeline, f"before Redis restart {restart}")

        pipeline.redis_server.restart()  # SIGTERM (AOF flushed), then a new redis-server on the same port and data
        during = [send(c, f"sent while the worker reconnects {restart}") for c in group]
        for command in during:
            pipeline.submit(command)
        submitted += held + during
        # The held messages are back at once (not after the visibility timeout), and the worker consumes again.
        wait_until(pipeline, finished(pipeline, held + during), BACK_WITHIN_S,
                   f"the commands held across Redis restart {restart} and those sent during it to end")
        assert_alive(pipeline, f"on Redis restart {restart}")

    pipeline.clear_faults()
    after = [send(c, "after the restarts") for c in customers]
    for command in after:
        pipeline.submit(command)
    submitted += after
    for command in submitted:
        pipeline.outcome(command["idempotency_key"], timeout_s=120)

    assert_alive(pipeline, "after the restarts")
    ends = {c["idempotency_key"]: [e["type"] for e in terminal_events(pipeline, c)] for c in submitted}
    assert all(types == ["command.succeeded"] for types in ends.values()), ends
    for cid in conversations.values():  # in Genesys: hello, held, during, after: each sent once
        assert len(pipeline.ledger("message.sent", cid)) == 1 + 3
        assert len(pipeline.ledger("conversation.created", cid)) == 1


def test_a_channel_closed_while_redis_is_down_restores_what_it_held_on_reconnect(tmp_path: Path) -> None:
    """The transport alone, in the order Celery closes a lost connection, without a worker around it."""
    with RedisServer(tmp_path / "redis") as server:
        conn = Connection(server.url, transport=TRANSPORT)
        queue = conn.SimpleQueue("parley.test.restart")
        queue.put({"n": 1})
        held = queue.get(timeout=5)  # delivered, not acked: in the channel's QoS and Redis's unacked hash
        channel = held.channel
        channel._brpop_start()  # the consumer waits for the next message: a BRPOP is in flight
        server.stop()
        # What Celery's consumer.on_connection_error_after_connected does to the worker's channel:
        with contextlib.suppress(*conn.connection_errors):
            channel.close()  # collect(): reading the in-flight BRPOP fails, so this close stops before its restore
        conn._do_close_transport()  # collect() then drops the transport's client
        channel.close()  # close(): the restore runs now; stock kombu raised AttributeError (the worker exited)
        assert channel.closed

        server.start()  # same port, same AOF
        with Connection(server.url, transport=TRANSPORT) as again:
            queue = again.SimpleQueue("parley.test.restart")
            restored = queue.get(timeout=5)
            assert restored.payload == {"n": 1}
            restored.ack()
            with again.default_channel.conn_or_acquire() as client:
                assert not client.hlen("unacked") and not client.llen("parley.test.restart")
            queue.close()
