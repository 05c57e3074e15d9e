"""Commands about one conversation run in the order they were submitted (issue 14), with real workers.

Real redis-server, `parley ingest`, a real `celery worker` (3 processes), the emulator on loopback. The
issue's report: `cobrowse.start`, `cobrowse.start`, `conversation.end` submitted together; the end overtook
the second start, which failed 404 with a hint about invented routes.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest

from parley.records import Records
from parley.settings import Settings
from tests.support.pipeline import Pipeline, key, module_pipeline
from tests.test_commands_integration import live_conversation
from tests.test_reliability_integration import pool_children, running_command

pytestmark = pytest.mark.integration

COBROWSE = "/api/v2/conversations/{conversationId}/cobrowse"

pipeline, no_faults = module_pipeline("ordering", celery_concurrency=3)


def start(cid: str) -> dict[str, Any]:
    return {"type": "cobrowse.start", "idempotency_key": key("start"), "conversation_id": cid}


def end_cobrowse(cid: str) -> dict[str, Any]:
    return {"type": "cobrowse.end", "idempotency_key": key("cbend"), "conversation_id": cid}


def end(cid: str) -> dict[str, Any]:
    return {"type": "conversation.end", "idempotency_key": key("end"), "conversation_id": cid}


def submit_all(pipeline: Pipeline, commands: list[dict[str, Any]], timeout_s: float = 120) -> list[dict[str, Any]]:
    for command in commands:
        pipeline.submit(command)
    return [pipeline.outcome(c["idempotency_key"], timeout_s) for c in commands]


def assert_ran_in_order(pipeline: Pipeline, commands: list[dict[str, Any]]) -> None:
    """No execution event (retrying, succeeded, failed) of a command comes before the last event of the command
    submitted before it: each one ran only after the previous one had ended."""
    rank = {c["idempotency_key"]: i for i, c in enumerate(commands)}
    seen = [rank[e["idempotency_key"]] for e in events(pipeline)
            if e.get("idempotency_key") in rank and e["type"] not in ("command.accepted", "command.duplicate")]
    assert seen == sorted(seen), seen


def events(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [json.loads(fields["event"]) for _id, fields in pipeline.client.xrange("parley:events")]


def test_start_start_end_submitted_together_run_in_that_order(pipeline: Pipeline) -> None:
    cid = live_conversation(pipeline)
    commands = [start(cid), start(cid), end(cid)]
    first, second, ended = submit_all(pipeline, commands)
    assert [o["type"] for o in (first, second, ended)] == ["command.succeeded"] * 3, (first, second, ended)
    assert first["result"]["reused"] is False
    assert second["result"]["reused"] is True and second["result"]["join_code"] == first["result"]["join_code"]
    assert ended["result"]["final_state"] == "disconnected"
    assert len(pipeline.ledger("cobrowse.started", cid)) == 1
    assert_ran_in_order(pipeline, commands)


def test_a_409_on_the_first_start_is_not_overtaken(pipeline: Pipeline) -> None:
    cid = live_conversation(pipeline)
    pipeline.fault(method="POST", path=COBROWSE, status=409, code="request.conflict", times=2)
    commands = [start(cid), start(cid), end(cid)]
    first, second, ended = submit_all(pipeline, commands)
    assert [o["type"] for o in (first, second, ended)] == ["command.succeeded"] * 3, (first, second, ended)
    retried = [e for e in pipeline.events_for(commands[0]["idempotency_key"]) if e["type"] == "command.retrying"]
    assert len(retried) == 2  # the end and the second start waited through both retries
    assert second["result"]["reused"] is True and second["result"]["join_code"] == first["result"]["join_code"]
    assert_ran_in_order(pipeline, commands)


def test_a_command_that_fails_for_good_lets_the_next_ones_run_in_order(pipeline: Pipeline) -> None:
    cid = live_conversation(pipeline)
    pipeline.fault(method="POST", path=COBROWSE, status=400, code="bad.request", times=1)
    commands = [start(cid), start(cid), end(cid)]
    failed, started, ended = submit_all(pipeline, commands)
    assert failed["type"] == "command.failed" and failed["error"]["code"] == "bad.request"
    assert started["type"] == ended["type"] == "command.succeeded" and started["result"]["reused"] is False
    assert_ran_in_order(pipeline, commands)


def test_a_cobrowse_started_after_the_end_says_the_conversation_ended(pipeline: Pipeline) -> None:
    cid = live_conversation(pipeline)
    ended, late = submit_all(pipeline, [end(cid), start(cid)])
    assert ended["type"] == "command.succeeded" and late["type"] == "command.failed"
    assert late["reason"] == f"conversation {cid} ended before this command ran"
    assert late["hint"].startswith("The conversation ended before this command ran")
    assert "route" not in late["hint"]


def test_twenty_interleaved_commands_on_five_conversations_keep_each_ones_order_through_409s_and_a_kill(
        pipeline: Pipeline) -> None:
    conversations = [live_conversation(pipeline) for _ in range(5)]
    chains = {cid: [start(cid), start(cid), end_cobrowse(cid), end(cid)] for cid in conversations}
    # Slow cobrowse calls so the kill lands mid-command; some of them conflict first.
    pipeline.fault(method="POST", path=COBROWSE, latency_ms=300)
    pipeline.fault(method="POST", path=COBROWSE, status=409, code="request.conflict", probability=0.5, seed=14,
                   times=4)
    interleaved = [chain[step] for step in range(4) for chain in chains.values()]
    for command in interleaved:
        pipeline.submit(command)
    celery = pipeline.processes["celery"]
    killed = 0
    while not killed:
        pipeline.client.xread({"parley:events": "$"}, block=50)  # wake up on activity
        if running_command(pipeline):
            for child in pool_children(celery.pid):  # every pool process: the running command's among them
                os.kill(child, signal.SIGKILL)
                killed += 1
    outcomes = {c["idempotency_key"]: pipeline.outcome(c["idempotency_key"], timeout_s=180) for c in interleaved}
    assert all(o["type"] == "command.succeeded" for o in outcomes.values()), outcomes
    crashed = [r for c in interleaved if (r := Records(pipeline.client, Settings()).get(
        outcomes[c["idempotency_key"]]["command_id"])) and r.crashes]
    assert crashed  # the kill did land on a running command
    for cid, chain in chains.items():
        assert_ran_in_order(pipeline, chain)
        first, second = (outcomes[c["idempotency_key"]]["result"] for c in chain[:2])
        assert second["reused"] is True and second["join_code"] == first["join_code"], cid
