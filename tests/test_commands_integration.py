"""The REST commands end to end: emulator on loopback, real redis-server, `parley ingest`, a real
`celery worker` with Parley's handlers. Each seed problem (000-003) is solved for good here."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.support.pipeline import Pipeline, key, module_pipeline

pytestmark = pytest.mark.integration

DEPLOYMENT = "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607"
SUPPORT_QUEUE = "5b7e1d9a-3c2f-4e81-9a6b-d4f08c2e7a13"


pipeline, no_faults = module_pipeline("pipeline")


def send(contact: str, text: str = "Your order shipped", **extra: Any) -> dict[str, Any]:
    return {"type": "message.send", "idempotency_key": key("msg"), "channel": "webmessaging",
            "from_address": DEPLOYMENT, "external_contact_id": contact, "text": text, **extra}


def contact() -> str:
    return str(uuid.uuid4())


def live_conversation(pipeline: Pipeline) -> str:
    done = pipeline.run(send(contact()))
    assert done["type"] == "command.succeeded", done
    return done["result"]["conversation_id"]


# --- seed 000: proactive message into the live conversation ------------------------------------------
def test_message_send_creates_then_reuses_the_live_conversation(pipeline: Pipeline) -> None:
    customer = contact()
    first = pipeline.run(send(customer))
    second = pipeline.run(send(customer, text="And it arrives tomorrow"))
    assert first["type"] == second["type"] == "command.succeeded"
    cid = first["result"]["conversation_id"]
    assert second["result"]["conversation_id"] == cid and second["result"]["reused"] is True
    assert len(pipeline.ledger("conversation.created", cid)) == 1
    assert len(pipeline.ledger("message.sent", cid)) == 2


def test_active_conversation_opened_elsewhere_is_joined_not_duplicated(pipeline: Pipeline) -> None:
    customer = contact()
    cid = pipeline.run(send(customer))["result"]["conversation_id"]
    pipeline.client.delete(*pipeline.client.keys("parley:state:live:*"))  # Parley forgets (cache lost)
    again = pipeline.run(send(customer, text="second"))
    assert again["type"] == "command.succeeded" and again["result"]["conversation_id"] == cid
    assert len(pipeline.ledger("conversation.created", cid)) == 1


def test_one_key_submitted_twenty_times_at_once_has_one_effect(pipeline: Pipeline) -> None:
    command = send(contact())
    for _ in range(20):
        pipeline.submit(command)
    done = pipeline.outcome(command["idempotency_key"])
    assert done["type"] == "command.succeeded"
    cid = done["result"]["conversation_id"]
    assert len(pipeline.ledger("message.sent", cid)) == 1
    events = pipeline.events_for(command["idempotency_key"])
    assert sum(e["type"] == "command.duplicate" for e in events) == 19


def test_thirty_keys_for_one_customer_at_once_one_conversation_thirty_messages(pipeline: Pipeline) -> None:
    customer = contact()
    commands = [send(customer, text=f"update {i}") for i in range(30)]
    for c in commands:
        pipeline.submit(c)
    outcomes = [pipeline.outcome(c["idempotency_key"], timeout_s=120) for c in commands]
    assert {o["type"] for o in outcomes} == {"command.succeeded"}
    cids = {o["result"]["conversation_id"] for o in outcomes}
    assert len(cids) == 1
    [cid] = cids
    assert len(pipeline.ledger("conversation.created", cid)) == 1
    assert len(pipeline.ledger("message.sent", cid)) == 30


# --- seed 002: end a conversation, verified ------------------------------------------------------------
def test_conversation_end_is_verified_and_idempotent(pipeline: Pipeline) -> None:
    cid = live_conversation(pipeline)
    done = pipeline.run({"type": "conversation.end", "idempotency_key": key("end"), "conversation_id": cid})
    assert done["type"] == "command.succeeded", done
    assert done["result"]["final_state"] == "disconnected" and done["result"]["already_ended"] is False
    assert done["result"]["participant_states"]["customer"] == "disconnected"
    assert len(pipeline.ledger("conversation.disconnected", cid)) == 1
    again = pipeline.run({"type": "conversation.end", "idempotency_key": key("end"), "conversation_id": cid})
    assert again["type"] == "command.succeeded" and again["result"]["already_ended"] is True
    assert len(pipeline.ledger("conversation.disconnected", cid)) == 1


def test_conversation_end_that_does_not_take_effect_fails_with_the_reason(pipeline: Pipeline) -> None:
    cid = live_conversation(pipeline)
    # Genesys answers the disconnect with 200 but nothing changes (the forum thread's complaint).
    pipeline.fault(method="PATCH", path="/api/v2/conversations/messages/{conversationId}",
                   status=500, code="internal.server.error", times=100)
    pipeline.fault(method="PATCH", path="/api/v2/conversations/{conversationId}/participants/{participantId}",
                   status=500, times=100)
    done = pipeline.run({"type": "conversation.end", "idempotency_key": key("end"), "conversation_id": cid})
    assert done["type"] == "command.failed"
    assert done["error"]["status"] == 500 and done["hint"]


def test_conversation_end_of_unknown_conversation_explains(pipeline: Pipeline) -> None:
    done = pipeline.run({"type": "conversation.end", "idempotency_key": key("end"),
                         "conversation_id": str(uuid.uuid4())})
    assert done["type"] == "command.failed"
    assert done["error"]["status"] == 404 and done["hint"]


# --- seed 003: cobrowse without 409s --------------------------------------------------------------------
def test_cobrowse_start_returns_the_live_session_then_ends(pipeline: Pipeline) -> None:
    cid = live_conversation(pipeline)
    first = pipeline.run({"type": "cobrowse.start", "idempotency_key": key("cb"), "conversation_id": cid})
    second = pipeline.run({"type": "cobrowse.start", "idempotency_key": key("cb"), "conversation_id": cid})
    assert first["type"] == second["type"] == "command.succeeded"
    assert first["result"]["join_code"] and second["result"]["join_code"] == first["result"]["join_code"]
    assert second["result"]["reused"] is True
    assert len(pipeline.ledger("cobrowse.started", cid)) == 1
    ended = pipeline.run({"type": "cobrowse.end", "idempotency_key": key("cbe"), "conversation_id": cid})
    assert ended["type"] == "command.succeeded" and ended["result"]["already_ended"] is False
    assert len(pipeline.ledger("cobrowse.ended", cid)) == 1
    fresh = pipeline.run({"type": "cobrowse.start", "idempotency_key": key("cb"), "conversation_id": cid})
    assert fresh["result"]["join_code"] != first["result"]["join_code"]


def test_conflict_409_is_retried_with_backoff(pipeline: Pipeline) -> None:
    cid = live_conversation(pipeline)
    pipeline.fault(method="POST", path="/api/v2/conversations/{conversationId}/cobrowse",
                   status=409, code="request.conflict", times=2)
    k = key("cb409")
    done = pipeline.run({"type": "cobrowse.start", "idempotency_key": k, "conversation_id": cid})
    assert done["type"] == "command.succeeded"
    retrying = [e for e in pipeline.events_for(k) if e["type"] == "command.retrying"]
    assert len(retrying) == 2 and all(e["error"]["code"] == "request.conflict" for e in retrying)
    assert len(pipeline.ledger("cobrowse.started", cid)) == 1


def test_live_cobrowse_without_known_join_code_is_replaced(pipeline: Pipeline) -> None:
    cid = live_conversation(pipeline)
    pipeline.run({"type": "cobrowse.start", "idempotency_key": key("cb"), "conversation_id": cid})
    pipeline.client.delete(*pipeline.client.keys("parley:state:cobrowse:*"))  # e.g. the caching attempt died
    done = pipeline.run({"type": "cobrowse.start", "idempotency_key": key("cb"), "conversation_id": cid})
    assert done["type"] == "command.succeeded" and done["result"]["join_code"]
    assert "fresh one started" in done["result"]["note"]
    assert len(pipeline.ledger("cobrowse.ended", cid)) == 1


# --- seed 001: third-party chat is routing only -------------------------------------------------------
def test_chat_create_is_routing_only_and_text_into_it_is_refused(pipeline: Pipeline) -> None:
    done = pipeline.run({"type": "chat.create", "idempotency_key": key("chat"), "queue_id": SUPPORT_QUEUE,
                         "provider": "AcmeCRM", "customer_name": "Ada"})
    assert done["type"] == "command.succeeded" and done["result"]["routing_only"] is True
    assert "roomId NONE" in done["result"]["note"]
    chat_id = done["result"]["conversation_id"]
    assert len(pipeline.ledger("chat.created", chat_id)) == 1
    refused = pipeline.run(send(contact(), conversation_id=chat_id))
    assert refused["type"] == "command.failed" and "third-party chat" in refused["reason"]
    assert "chat.error.not.found" in refused["hint"]
    assert pipeline.ledger("message.sent", chat_id) == []


def test_chat_create_on_unknown_queue_fails_with_hint(pipeline: Pipeline) -> None:
    done = pipeline.run({"type": "chat.create", "idempotency_key": key("chat"), "queue_id": str(uuid.uuid4()),
                         "provider": "AcmeCRM"})
    assert done["type"] == "command.failed" and done["error"]["code"] == "chat.error.queue.not.found"
    assert done["hint"]
    assert pipeline.client.xlen("parley:dead") >= 1


# --- retry classes ---------------------------------------------------------------------------------
def test_rate_limit_429_waits_retry_after(pipeline: Pipeline) -> None:
    pipeline.fault(method="POST", path="/api/v2/conversations/messages/agentless", status=429, retry_after_s=1,
                   times=1)
    command = send(contact())
    done = pipeline.run(command)
    assert done["type"] == "command.succeeded"
    [retrying] = [e for e in pipeline.events_for(command["idempotency_key"]) if e["type"] == "command.retrying"]
    assert retrying["delay_s"] >= 1 and retrying["error"]["code"] == "too.many.requests.retry.after"


def test_server_errors_and_timeouts_are_retried_without_doubling(pipeline: Pipeline) -> None:
    customer = contact()
    cid = pipeline.run(send(customer))["result"]["conversation_id"]
    # The next send is performed by Genesys but the answer never arrives (connection dropped after).
    pipeline.fault(method="POST", path="/api/v2/conversations/messages/agentless", drop="after", times=1)
    pipeline.fault(method="GET", path="/api/v2/conversations/messages/{conversationId}", status=503, times=1)
    command = send(customer, text="exactly once please")
    done = pipeline.run(command)
    assert done["type"] == "command.succeeded", done
    kinds = [e["type"] for e in pipeline.events_for(command["idempotency_key"])]
    assert kinds.count("command.retrying") == 2
    assert len(pipeline.ledger("message.sent", cid)) == 2, "the dropped send was found, not repeated"
    assert "not sent again" in done["result"]["note"]


def test_permanent_4xx_fails_at_once(pipeline: Pipeline) -> None:
    pipeline.fault(method="POST", path="/api/v2/conversations/messages/agentless", status=403,
                   code="missing.permissions", times=1)
    command = send(contact())
    done = pipeline.run(command)
    assert done["type"] == "command.failed" and done["error"]["code"] == "missing.permissions"
    assert "command.retrying" not in [e["type"] for e in pipeline.events_for(command["idempotency_key"])]
    assert "permission" in done["hint"].lower()


def test_expired_token_is_refreshed_once(pipeline: Pipeline) -> None:
    live_conversation(pipeline)  # a token is cached
    before = len(pipeline.ledger("token.issued"))
    pipeline.http.post("/__emulator/clock", json={"advance_s": 90_000}).raise_for_status()
    done = pipeline.run(send(contact()))
    assert done["type"] == "command.succeeded"
    assert len(pipeline.ledger("token.issued")) == before + 1


def test_expired_command_is_not_executed(pipeline: Pipeline) -> None:
    command = send(contact(), expires_at="2001-01-01T00:00:00Z")
    done = pipeline.run(command)
    assert done["type"] == "command.expired"


# --- the state cache refreshes from Genesys ------------------------------------------------------------
def test_cached_cobrowse_ended_outside_parley_is_replaced(pipeline: Pipeline) -> None:
    cid = live_conversation(pipeline)
    first = pipeline.run({"type": "cobrowse.start", "idempotency_key": key("cb"), "conversation_id": cid})
    token = pipeline.genesys_token()
    pipeline.http.patch(f"/api/v2/conversations/cobrowsesessions/{cid}", json={"state": "disconnected"},
                        headers={"Authorization": f"Bearer {token}"}).raise_for_status()  # an agent ended it
    again = pipeline.run({"type": "cobrowse.start", "idempotency_key": key("cb"), "conversation_id": cid})
    assert again["type"] == "command.succeeded" and again["result"]["reused"] is False
    assert again["result"]["join_code"] != first["result"]["join_code"]
    assert len(pipeline.ledger("cobrowse.started", cid)) == 2


def test_customer_who_left_gets_a_new_conversation(pipeline: Pipeline) -> None:
    customer = contact()
    cid = pipeline.run(send(customer))["result"]["conversation_id"]
    pipeline.http.post(f"/__emulator/conversations/{cid}/customer/disconnect").raise_for_status()
    again = pipeline.run(send(customer, text="are you still there?"))
    assert again["type"] == "command.succeeded"
    assert again["result"]["conversation_id"] != cid and again["result"]["reused"] is False
    assert len(pipeline.ledger("message.sent", cid)) == 1


# --- secrets and customer text stay out of logs ---------------------------------------------------------
def test_no_customer_text_or_secret_in_worker_logs(pipeline: Pipeline) -> None:
    secret_text = "my card number is 4111 1111 1111 1111"
    done = pipeline.run(send(contact(), text=secret_text))
    assert done["type"] == "command.succeeded"
    logs = pipeline.logs()
    assert "parley.message.send" in logs  # the workers did log (at INFO)
    # The OAuth token the workers use, as cached for the fleet in Redis.
    [token_key] = list(pipeline.client.scan_iter("*:token"))
    token = json.loads(pipeline.client.get(token_key))["access_token"]
    assert len(token) > 20
    # Whole strings only: a fragment like "4111" turns up by chance inside hex task ids.
    for needle in (secret_text, "4111 1111 1111 1111", pipeline.fixtures["client_secret"], token):
        assert needle not in logs
