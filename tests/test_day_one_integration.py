"""A real org's rules on day one (issue 13), through the whole pipeline: real redis-server,
`parley ingest`, a Celery worker, the emulator on loopback."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.pipeline import Pipeline, key, running_pipeline

pytestmark = pytest.mark.integration

CLAIMS_QUEUE = "e7d4a2c9-6b1f-4f83-9c5e-0a8b3d2f7e14"  # seeded with mandatory wrap-up
EMMA = "6d2f8b3e-0a4c-4e97-9b1d-c5a7e3f8d209"
WRAPUP_CODE = "0e9d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with running_pipeline(Path(tmp_path_factory.mktemp("day-one"))) as p:
        yield p


@pytest.fixture(autouse=True)
def clean(pipeline: Pipeline) -> Iterator[None]:
    pipeline.clear_faults()
    yield
    pipeline.clear_faults()
    pipeline.http.patch("/__emulator/config", json={"disconnect_delay_s": 0.0, "disconnect_ignored": 0})


def claims_conversation(pipeline: Pipeline) -> tuple[str, str]:
    """An SMS conversation on the Claims queue that an agent answered: (conversation id, agent participant)."""
    body = {"queueId": CLAIMS_QUEUE, "toAddress": f"+1317555{uuid.uuid4().int % 10_000:04d}",
            "toAddressMessengerType": "sms"}
    created = pipeline.http.post("/api/v2/conversations/messages", json=body,
                                 headers={"Authorization": f"Bearer {pipeline.genesys_token()}"})
    created.raise_for_status()
    cid = created.json()["id"]
    joined = pipeline.http.post(f"/__emulator/conversations/{cid}/agent/join", json={"agent_id": EMMA})
    joined.raise_for_status()
    return cid, joined.json()["participant_id"]


def end(cid: str, **extra: Any) -> dict[str, Any]:
    return {"type": "conversation.end", "idempotency_key": key("end"), "conversation_id": cid, **extra}


# --- 13.7 mandatory wrap-up -----------------------------------------------------------------------
def test_ending_a_mandatory_wrapup_conversation_without_a_code_fails_at_once_with_a_hint(pipeline: Pipeline) -> None:
    cid, _agent = claims_conversation(pipeline)
    done = pipeline.run(end(cid))
    assert done["type"] == "command.failed", done
    assert done["attempts"] == 1  # the queue's rule: retrying would be refused the same way
    assert done["error"]["code"] == "conversation.error.wrapup.cannot.skip"
    assert "`wrapup`" in done["hint"] and "code" in done["hint"]
    assert pipeline.ledger("conversation.disconnected", cid) == []


def test_ending_it_with_a_wrapup_code_wraps_the_agent_up_and_ends_it(pipeline: Pipeline) -> None:
    cid, agent = claims_conversation(pipeline)
    done = pipeline.run(end(cid, wrapup={"code": WRAPUP_CODE, "notes": "claim filed"}))
    assert done["type"] == "command.succeeded", done
    assert done["result"]["final_state"] == "disconnected"
    conv = pipeline.http.get(f"/api/v2/conversations/{cid}",
                             headers={"Authorization": f"Bearer {pipeline.genesys_token()}"}).json()
    assert next(p for p in conv["participants"] if p["id"] == agent)["wrapup"]["code"] == WRAPUP_CODE


# --- 13.6 disconnects are not instant -------------------------------------------------------------
DEPLOYMENT = "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607"
PATCH_CONVERSATION = "/api/v2/conversations/messages/{conversationId}"


def live_conversation(pipeline: Pipeline) -> str:
    body = {"fromAddress": DEPLOYMENT, "toAddressMessengerType": "webmessaging",
            "externalContactId": str(uuid.uuid4()), "textBody": "hello"}
    sent = pipeline.http.post("/api/v2/conversations/messages/agentless", json=body,
                              headers={"Authorization": f"Bearer {pipeline.genesys_token()}"})
    sent.raise_for_status()
    return str(sent.json()["conversationId"])


def test_a_disconnect_that_applies_later_is_waited_for(pipeline: Pipeline) -> None:
    pipeline.http.patch("/__emulator/config", json={"disconnect_delay_s": 1.0}).raise_for_status()
    cid = live_conversation(pipeline)
    done = pipeline.run(end(cid))
    assert done["type"] == "command.succeeded", done
    assert done["result"]["already_ended"] is False
    assert len(pipeline.ledger("conversation.disconnected", cid)) == 1


def test_a_disconnect_answered_200_that_changed_nothing_is_sent_again(pipeline: Pipeline) -> None:
    pipeline.fault(method="PATCH", path=PATCH_CONVERSATION, no_effect=True, times=1)
    cid = live_conversation(pipeline)
    done = pipeline.run(end(cid))
    assert done["type"] == "command.succeeded", done
    assert len(pipeline.ledger("conversation.disconnected", cid)) == 1


def test_a_disconnect_that_never_applies_fails_clearly_at_the_deadline(pipeline: Pipeline) -> None:
    pipeline.fault(method="PATCH", path=PATCH_CONVERSATION, no_effect=True)
    cid = live_conversation(pipeline)
    done = pipeline.run(end(cid))
    assert done["type"] == "command.failed", done
    assert re.search(r"disconnect was accepted [23] times but the conversation still reads live after \d+s",
                     done["reason"]), done["reason"]
    assert "conversation:communication:disconnect" in done["hint"]
    assert pipeline.ledger("conversation.disconnected", cid) == []
