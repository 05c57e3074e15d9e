"""What a lost answer did, settled from Genesys before acting again (issue 10, defects 1 and 2).

Real redis-server, `parley ingest`, a real `celery worker`, the emulator on loopback with its
analytics lag (a new conversation is listed 2 s after it starts). Each test fails with the recovery
that matched on time alone and sent blind when nothing was cached.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from parley.producer import Producer
from parley.settings import Settings
from tests.support.events import await_events
from tests.support.pipeline import Pipeline, key, module_pipeline

pytestmark = pytest.mark.integration

DEPLOYMENT = "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607"
SUPPORT_QUEUE = "5b7e1d9a-3c2f-4e81-9a6b-d4f08c2e7a13"
AGENTLESS = "/api/v2/conversations/messages/agentless"
ANALYTICS = "/api/v2/analytics/conversations/details/query"


pipeline, no_faults = module_pipeline("recovery")


def send(customer: str, text: str) -> dict[str, Any]:
    return {"type": "message.send", "idempotency_key": key("msg"), "channel": "webmessaging",
            "from_address": DEPLOYMENT, "external_contact_id": customer, "text": text}


def texts_sent(pipeline: Pipeline, conversation_id: str) -> list[str]:
    """The text of every message Parley's side sent into the conversation, read back from Genesys."""
    token = pipeline.genesys_token()
    texts = []
    for entry in pipeline.ledger("message.sent", conversation_id):
        reply = pipeline.http.get(f"/api/v2/conversations/messages/{conversation_id}/messages/{entry['message_id']}",
                                  headers={"Authorization": f"Bearer {token}"})
        reply.raise_for_status()
        texts.append(reply.json()["textBody"])
    return texts


WHATSAPP = "d93b6f1e-2c8a-4e05-a7d4-5f1b9c3e6a28"
TEMPLATE = "4f1d2c3b-5a69-4e7f-8d0c-1b2a3c4d5e6f"


def whatsapp(to: str, **template: Any) -> dict[str, Any]:
    return {"type": "message.send", "idempotency_key": key("wa"), "channel": "whatsapp", "from_address": WHATSAPP,
            "to_address": to, "template": {"response_id": TEMPLATE, **template}}


def whatsapp_number() -> str:
    return str(4477_0090_0000 + uuid.uuid4().int % 100_000)


def test_a_whatsapp_send_without_a_template_is_rejected_at_the_door(pipeline: Pipeline) -> None:
    command = whatsapp(whatsapp_number())
    del command["template"]
    command["text"] = "text-only WhatsApp: Genesys would refuse it"
    Producer(pipeline.client, Settings()).submit_raw(json.dumps(command))  # submit() would refuse it first
    events = await_events(pipeline.client, lambda ev: any(
        e.get("idempotency_key") == command["idempotency_key"] and e["type"] == "command.rejected" for e in ev))
    rejected = next(e for e in events if e.get("idempotency_key") == command["idempotency_key"]
                    and e["type"] == "command.rejected")
    assert "template is required when channel is whatsapp" in rejected["reason"]
    assert not any(e["type"] == "command.accepted" for e in pipeline.events_for(command["idempotency_key"]))


def test_a_whatsapp_template_whose_answer_was_lost_is_found_not_sent_twice(pipeline: Pipeline) -> None:
    to = whatsapp_number()
    pipeline.fault(method="POST", path=AGENTLESS, drop="after", times=1)
    command = whatsapp(to, parameters={"order": "42"})
    done = pipeline.run(command)
    assert done["type"] == "command.succeeded", done
    cid = done["result"]["conversation_id"]
    assert "not sent again" in done["result"]["note"]
    assert len(pipeline.ledger("message.sent", cid)) == 1
    # Another template send to the same customer with other values is a new message, not a match.
    again = pipeline.run(whatsapp(to, parameters={"order": "43"}))
    assert again["type"] == "command.succeeded", again
    assert again["result"]["conversation_id"] == cid and again["result"]["message_id"] != done["result"]["message_id"]
    assert len(pipeline.ledger("message.sent", cid)) == 2


def await_retrying(pipeline: Pipeline, idempotency_key: str) -> None:
    await_events(pipeline.client, lambda events: any(
        e.get("idempotency_key") == idempotency_key and e["type"] == "command.retrying" for e in events))


def test_a_recovering_send_never_claims_another_commands_message(pipeline: Pipeline) -> None:
    customer = str(uuid.uuid4())
    cid = pipeline.run(send(customer, "welcome"))["result"]["conversation_id"]
    # B's send answers 503 (outcome unknown) and B waits 3 s before it looks.
    pipeline.fault(method="POST", path=AGENTLESS, status=503, retry_after_s=3, times=1)
    b = send(customer, "B: your refund is on its way")
    pipeline.submit(b)
    await_retrying(pipeline, b["idempotency_key"])
    # Meanwhile A's send is performed but its answer is lost; A recovers its own message first.
    pipeline.fault(method="POST", path=AGENTLESS, drop="after", times=1)
    a = send(customer, "A: your parcel left the depot")
    done_a = pipeline.run(a)
    done_b = pipeline.outcome(b["idempotency_key"])
    assert done_a["type"] == done_b["type"] == "command.succeeded", (done_a, done_b)
    assert done_a["result"]["message_id"] != done_b["result"]["message_id"]
    assert sorted(texts_sent(pipeline, cid)) == sorted(["welcome", a["text"], b["text"]])


def test_first_message_whose_answer_was_lost_is_found_not_sent_twice(pipeline: Pipeline) -> None:
    # Nothing cached: the lost attempt opened the conversation, which analytics lists only 2 s later.
    pipeline.fault(method="POST", path=AGENTLESS, drop="after", times=1)
    command = send(str(uuid.uuid4()), "first contact, exactly once")
    done = pipeline.run(command)
    assert done["type"] == "command.succeeded", done
    cid = done["result"]["conversation_id"]
    assert "not sent again" in done["result"]["note"]
    assert texts_sent(pipeline, cid) == [command["text"]]
    assert len(pipeline.ledger("conversation.created", cid)) == 1


def test_lost_answer_and_no_message_sent_sends_once_after_the_lookup(pipeline: Pipeline) -> None:
    # The connection drops before Genesys acts: the lookup finds nothing, so the message is sent now.
    pipeline.fault(method="POST", path=AGENTLESS, drop="before", times=1)
    command = send(str(uuid.uuid4()), "sent after the lookup")
    done = pipeline.run(command)
    assert done["type"] == "command.succeeded", done
    assert "note" not in done["result"] or not done["result"]["note"]
    assert texts_sent(pipeline, done["result"]["conversation_id"]) == [command["text"]]


def test_lookup_refused_fails_with_a_hint_instead_of_risking_a_duplicate(pipeline: Pipeline) -> None:
    pipeline.fault(method="POST", path=AGENTLESS, drop="after", times=1)
    pipeline.fault(method="POST", path=ANALYTICS, status=403, code="missing.any.permissions", times=1)
    customer = str(uuid.uuid4())
    command = send(customer, "never twice")
    done = pipeline.run(command)
    assert done["type"] == "command.failed", done
    assert "analytics:conversationDetail:view" in done["hint"]
    sent = [e for e in pipeline.ledger("message.sent") if e.get("external_contact_id") == customer]
    assert len(sent) <= 1


def test_a_chat_lookup_through_many_chats_and_failing_reads_finishes(pipeline: Pipeline) -> None:
    """Chaos finding: the lookup reads every chat the queue got while the lost attempt ran; with a 503 on
    a third of the reads, starting over on each one spent every attempt. It reads on instead."""
    def chat(name: str) -> dict[str, Any]:
        return {"type": "chat.create", "idempotency_key": key("chat"), "queue_id": SUPPORT_QUEUE,
                "provider": "BusyCRM", "customer_name": name}

    others = [chat(f"other {n}") for n in range(10)]
    for command in others:
        pipeline.submit(command)
    for command in others:
        assert pipeline.outcome(command["idempotency_key"], 60)["type"] == "command.succeeded"
    pipeline.fault(method="POST", path="/api/v2/conversations/chats", drop="after", times=1)
    pipeline.fault(method="GET", path="/api/v2/conversations/{id}", status=503, probability=0.35, seed=11)
    command = chat("Ada")
    done = pipeline.run(command, timeout_s=120)
    assert done["type"] == "command.succeeded", done
    assert done["result"]["reused"] is True
    mine = [e for e in pipeline.ledger("chat.created") if e["conversation_id"] == done["result"]["conversation_id"]]
    assert len(mine) == 1
    spent = [e for e in pipeline.events_for(command["idempotency_key"]) if e["type"] == "command.retrying"]
    print("attempts spent after the lost one:", len(spent), [e["reason"] for e in spent])


def test_chat_whose_answer_was_lost_is_found_by_its_command_id(pipeline: Pipeline) -> None:
    before = len(pipeline.ledger("chat.created"))
    pipeline.fault(method="POST", path="/api/v2/conversations/chats", drop="after", times=1)
    command = {"type": "chat.create", "idempotency_key": key("chat"), "queue_id": SUPPORT_QUEUE,
               "provider": "AcmeCRM", "customer_name": "Ada"}
    done = pipeline.run(command)
    assert done["type"] == "command.succeeded", done
    assert done["result"]["reused"] is True and done["result"]["routing_only"] is True
    created = pipeline.ledger("chat.created")
    assert len(created) == before + 1 and created[-1]["conversation_id"] == done["result"]["conversation_id"]
