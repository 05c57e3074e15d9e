"""GuestChatSession.resume: carrying on a conversation created before, from its saved create answer."""

from __future__ import annotations

import json

from guest.events import AgentMessage, Ended, GuestMessageConfirmed, OpenSocket, ProtocolError, SessionStarted
from guest.guestchat import CreateConversation, FetchHistory, GcState, SendMessage
from tests.test_guest_protocol_guestchat import AGENT, CID, GUEST, JWT, STREAM_URI, T0, Harness, chat_body, of_type

CREATED = json.dumps({"id": CID, "jwt": JWT, "eventStreamUri": STREAM_URI,
                      "member": {"id": GUEST, "role": "CUSTOMER", "state": "CONNECTED", "displayName": "Ada"}})


def _resumed(created: str = CREATED) -> Harness:
    h = Harness()
    h.session.resume(created, h.now)
    h.drain()
    return h


def test_resume_reattaches_the_same_stream_at_once_and_backfills_without_a_second_conversation() -> None:
    h = _resumed()
    assert h.take_events() == [SessionStarted(new_session=False, conversation_id=CID)]
    assert h.pending(CreateConversation) == []
    assert h.pop(OpenSocket).uri.get_secret_value() == STREAM_URI
    assert (h.session.conversation_id, h.session.member_id) == (CID, GUEST)
    h.session.connection_made(h.now)
    h.drain()
    history = h.pop(FetchHistory)
    assert history.operation.params == {"sortOrder": "ascending", "maxResults": 100}
    missed = chat_body("a1", AGENT, "missed while nobody listened", h.now - 5)
    missed["sender"]["role"] = "AGENT"
    h.ok(history, {"entities": [missed]})
    h.run_until(2)
    assert [e.text for e in of_type(h.take_events(), AgentMessage)] == ["missed while nobody listened"]


def test_a_resumed_chat_sends_as_any_other() -> None:
    h = _resumed()
    h.session.connection_made(h.now)
    h.drain()
    h.ok(h.pop(FetchHistory), {"entities": []})
    h.take_events()
    h.run_until(11)  # no CONNECTED on the stream yet: sent after the grace
    tracing_id = h.send("hello again")
    h.answer_send(h.pop(SendMessage), "g1")
    assert of_type(h.take_events(), GuestMessageConfirmed) == [GuestMessageConfirmed(tracing_id=tracing_id,
                                                                                      message_id="g1")]


def test_an_expired_jwt_cannot_be_resumed() -> None:
    h = Harness()
    h.now = T0 + 21 * 3600
    h.session.resume(CREATED, h.now)
    h.drain()
    assert h.take_events()[-1] == Ended(by="system", reason="guest chat JWT expired")
    assert h.intents == []


def test_an_unreadable_saved_answer_creates_a_new_conversation() -> None:
    h = _resumed("{not json")
    assert of_type(h.take_events(), ProtocolError)
    assert h.pop(CreateConversation) and h.session.state is GcState.CREATING
