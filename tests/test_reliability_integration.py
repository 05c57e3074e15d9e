"""Crashes and restarts with real processes: nothing lost, nothing done twice."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.events import await_events, count
from tests.support.pipeline import Pipeline, key, running_pipeline
from tests.test_commands_integration import DEPLOYMENT

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    with running_pipeline(tmp_path, celery_concurrency=2) as p:
        yield p


def send(customer: str, text: str) -> dict:
    return {"type": "message.send", "idempotency_key": key("rel"), "channel": "webmessaging",
            "from_address": DEPLOYMENT, "external_contact_id": customer, "text": text}


def pool_children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


def running_command(pipeline: Pipeline) -> bool:
    return any(pipeline.client.hget(k, "state") == "running" for k in pipeline.client.scan_iter("parley:cmd:*"))


def open_conversations(pipeline: Pipeline, customers: list[str]) -> dict[str, str]:
    out = {}
    for customer in customers:
        done = pipeline.run(send(customer, "hello"))
        out[customer] = done["result"]["conversation_id"]
    return out


def test_celery_pool_killed_mid_command_five_times(pipeline: Pipeline) -> None:
    customers = [str(uuid.uuid4()) for _ in range(6)]
    conversations = open_conversations(pipeline, customers)
    # Slow Genesys down so the kills land while commands are in flight.
    pipeline.fault(method="POST", path="/api/v2/conversations/messages/agentless", latency_ms=300)
    commands = [send(c, f"update {i}") for i in range(3) for c in customers]
    for c in commands:
        pipeline.submit(c)
    celery = pipeline.processes["celery"]
    kills = 0
    while kills < 5:
        pipeline.client.xread({"parley:events": "$"}, block=50)  # wake up on activity
        if running_command(pipeline):
            children = pool_children(celery.pid)
            if children:
                os.kill(children[0], signal.SIGKILL)
                kills += 1
                await_events(pipeline.client, lambda ev: True, timeout_s=1)  # let the pool replace it
    outcomes = [pipeline.outcome(c["idempotency_key"], timeout_s=180) for c in commands]
    failed = [o for o in outcomes if o["type"] != "command.succeeded"]
    assert not failed, failed
    for customer, cid in conversations.items():
        assert len(pipeline.ledger("message.sent", cid)) == 1 + 3, f"customer {customer}"
    assert pipeline.ledger("conversation.created") and all(
        len(pipeline.ledger("conversation.created", cid)) == 1 for cid in conversations.values())


def test_redis_restarted_mid_run_loses_nothing(pipeline: Pipeline) -> None:
    customers = [str(uuid.uuid4()) for _ in range(4)]
    conversations = open_conversations(pipeline, customers)
    pipeline.fault(method="POST", path="/api/v2/conversations/messages/agentless", latency_ms=100)
    before = [send(c, f"before {i}") for i in range(5) for c in customers]
    for c in before:
        pipeline.submit(c)
    await_events(pipeline.client, lambda ev: count(ev, "command.succeeded") >= len(customers) + 3, timeout_s=60)
    pipeline.redis_server.restart()  # SIGTERM: Redis writes its AOF and stops; then it starts from it
    after = [send(c, f"after {i}") for i in range(2) for c in customers]
    for c in after:
        pipeline.submit(c)
    outcomes = [pipeline.outcome(c["idempotency_key"], timeout_s=180) for c in before + after]
    assert {o["type"] for o in outcomes} == {"command.succeeded"}
    for cid in conversations.values():
        assert len(pipeline.ledger("message.sent", cid)) == 1 + 5 + 2
    assert pipeline.processes["ingest"].poll() is None and pipeline.processes["celery"].poll() is None
