"""What a command spends of the 300 requests/minute an OAuth client gets (issue 14.5): the handlers
against a Genesys that records every call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import pytest

from genesys.models import Conversation, SendAgentlessOutboundMessageResponse
from parley.settings import Settings
from parley.state_cache import CustomerKey, LiveConversation
from schemas.commands import ConversationEnd, MessageSend
from tasks.context import ExecutionContext
from tasks.handlers import conversation_end
from tasks.handlers.message_send import send_message

DEPLOYMENT = "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607"
CONTACT = "2e6b9d14-7f3a-4c85-a1e0-5d8c3b7f9a26"
CID = "6f1c2a9e-3b7d-4c55-9a0e-2f4b8d1e7c30"


class RecordingGenesys:
    """Genesys as one live conversation per customer; ``calls`` lists every request made."""

    def __init__(self, conversation_id: str = CID, ended_at: datetime | None = None) -> None:
        self.calls: list[str] = []
        self.conversation_id = conversation_id
        self.ended_at = ended_at

    def send_agentless(self, **request: Any) -> SendAgentlessOutboundMessageResponse:
        self.calls.append("POST agentless" + (" (use existing)" if request["use_existing_active_conversation"] else ""))
        return SendAgentlessOutboundMessageResponse(id=f"m{len(self.calls)}", conversation_id=self.conversation_id)

    def patch_message_conversation(self, cid: str) -> Conversation:
        self.calls.append("PATCH conversation")
        self.ended_at = self.ended_at or datetime.now(UTC)
        return self.get_conversation(cid, record=False)

    def get_conversation(self, cid: str, record: bool = True) -> Conversation:
        if record:
            self.calls.append("GET conversation")
        state = "disconnected" if self.ended_at else "connected"
        return Conversation.model_validate({
            "id": cid, "startTime": "2026-11-21T10:00:00Z",
            "endTime": self.ended_at.isoformat() if self.ended_at else None,
            "participants": [{"id": "p1", "purpose": "customer", "messages": [{"id": "m1", "state": state}]}]})


def context(genesys: RecordingGenesys, redis: fakeredis.FakeRedis, **settings: Any) -> ExecutionContext:
    return ExecutionContext(settings=Settings(**settings), redis=redis, command_id="c1", attempt=1, recovering=False,
                            genesys_factory=lambda: genesys)  # type: ignore[arg-type,return-value]


@pytest.fixture
def redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


SEND = MessageSend(type="message.send", idempotency_key="k", channel="webmessaging", from_address=DEPLOYMENT,
                   external_contact_id=CONTACT, text="Your order shipped")


@pytest.mark.parametrize("cached_age", [None, timedelta(0), timedelta(hours=5)])
def test_message_send_is_one_request_whatever_the_cache_knows(redis, cached_age: timedelta | None) -> None:
    genesys = RecordingGenesys()
    ctx = context(genesys, redis, state_max_age_s=60)
    if cached_age is not None:
        key = CustomerKey.for_message(org="default", channel="webmessaging", from_address=DEPLOYMENT,
                                      external_contact_id=CONTACT)
        ctx.state.put_conversation(key, LiveConversation(conversation_id=CID,
                                                         checked_at=datetime.now(UTC) - cached_age))
    result = send_message(ctx, SEND)
    assert genesys.calls == ["POST agentless (use existing)"]
    assert result.conversation_id == CID and result.reused is (cached_age is not None)


def test_a_send_answered_from_another_conversation_forgets_the_cached_one(redis) -> None:
    genesys = RecordingGenesys(conversation_id="11111111-2222-4333-8444-555555555555")
    ctx = context(genesys, redis)
    key = CustomerKey.for_message(org="default", channel="webmessaging", from_address=DEPLOYMENT,
                                  external_contact_id=CONTACT)
    ctx.state.put_conversation(key, LiveConversation(conversation_id=CID))
    result = send_message(ctx, SEND)
    assert result.reused is False and genesys.calls == ["POST agentless (use existing)"]
    assert ctx.state.get_conversation(key) is None  # the ended one is gone; the new one commits with success


def test_a_verified_end_is_two_requests_when_genesys_applies_it_at_once(redis) -> None:
    genesys = RecordingGenesys()
    result = conversation_end.end_conversation(
        context(genesys, redis), ConversationEnd(type="conversation.end", idempotency_key="k", conversation_id=CID))
    assert genesys.calls == ["PATCH conversation", "GET conversation"]
    assert result.final_state == "disconnected" and result.already_ended is False


def test_ending_an_ended_conversation_says_so(redis) -> None:
    genesys = RecordingGenesys(ended_at=datetime.now(UTC) - timedelta(minutes=3))
    result = conversation_end.end_conversation(
        context(genesys, redis), ConversationEnd(type="conversation.end", idempotency_key="k", conversation_id=CID))
    assert result.already_ended is True and len(genesys.calls) == 2
