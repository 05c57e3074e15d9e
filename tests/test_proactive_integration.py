"""Seed 000 end to end: a proactive message reaches a customer whose web messaging session is open.

Real redis-server, `parley ingest`, a Celery worker, a guest worker (`parley guest`) holding the guest's
socket, and the emulator on loopback. The business system knows the guest's ``externalContactId``
(Genesys' identity for the customer) and sends ``message.send`` to it from the deployment; Genesys
delivers it into the guest's Messenger, with a conversation or without one yet, and the guest's reply
joins the conversation the message opened or used.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.events import await_events
from tests.support.pipeline import Pipeline, key, module_pipeline

pytestmark = pytest.mark.integration

DEPLOYMENT = "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607"

pipeline, no_faults = module_pipeline("proactive", guest_workers=1)


def open_session(pipeline: Pipeline, session_key: str, **extra: Any) -> dict[str, Any]:
    """Start a web messaging guest session through Parley; the emulator's view of it."""
    started = pipeline.run({"type": "guest.start", "idempotency_key": key("start"), "session_key": session_key,
                            "deployment_id": DEPLOYMENT, **extra})
    assert started["type"] == "command.succeeded", started
    sessions = pipeline.http.get("/__emulator/webmessaging/sessions").json()["sessions"]
    return max((s for s in sessions if s["deployment_id"] == DEPLOYMENT and s["connections"]),
               key=lambda s: s["expires_at"] or 0)


def relayed(pipeline: Pipeline, session_key: str, text: str) -> None:
    await_events(pipeline.client, lambda ev: any(
        e["type"] == "guest.message" and e.get("session_key") == session_key and e.get("text") == text for e in ev))


def proactive(contact: str, text: str) -> dict[str, Any]:
    return {"type": "message.send", "idempotency_key": key("proactive"), "channel": "webmessaging",
            "from_address": DEPLOYMENT, "external_contact_id": contact, "text": text}


def test_a_proactive_message_reaches_an_open_session_without_a_conversation(pipeline: Pipeline) -> None:
    session_key = key("guest")
    session = open_session(pipeline, session_key)
    assert session["conversation_id"] is None  # the guest has not written yet

    sent = pipeline.run(proactive(session["external_contact_id"], "Your order has shipped. Questions?"))
    assert sent["type"] == "command.succeeded", sent
    relayed(pipeline, session_key, "Your order has shipped. Questions?")

    # The guest's answer joins the conversation the proactive message opened.
    answer = pipeline.run({"type": "guest.send", "idempotency_key": key("send"), "session_key": session_key,
                           "text": "Yes: when will it arrive?"})
    assert answer["type"] == "command.succeeded", answer
    received = pipeline.ledger("guest.message.received", sent["result"]["conversation_id"])
    assert len(received) == 1


def test_a_proactive_message_joins_the_sessions_live_conversation(pipeline: Pipeline) -> None:
    session_key = key("guest")
    session = open_session(pipeline, session_key, first_message="Hello, is anyone there?")
    relayed(pipeline, session_key, "You said: Hello, is anyone there?")  # the emulator's agent answers

    sent = pipeline.run(proactive(session["external_contact_id"], "We are looking into it."))
    assert sent["type"] == "command.succeeded", sent
    sessions = pipeline.http.get("/__emulator/webmessaging/sessions").json()["sessions"]
    live = next(s["conversation_id"] for s in sessions if s["session_id"] == session["session_id"])
    assert sent["result"]["conversation_id"] == live
    relayed(pipeline, session_key, "We are looking into it.")
