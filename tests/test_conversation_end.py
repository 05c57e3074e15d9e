"""conversation.end's verification, against a Genesys that accepts the disconnect but never applies it."""

from __future__ import annotations

from typing import Any

import pytest

from genesys.models import Conversation
from parley.settings import Settings
from schemas.commands import ConversationEnd
from tasks.context import ExecutionContext, Refused
from tasks.handlers import conversation_end

CID = "6f1c2a9e-3b7d-4c55-9a0e-2f4b8d1e7c30"


class StubbornGenesys:
    """Answers 200 to the disconnect (the forum thread's "PATCH said 200 but nothing changed")."""

    def __init__(self) -> None:
        self.patched = 0

    def get_conversation(self, cid: str) -> Conversation:
        return Conversation.model_validate({"id": cid, "startTime": "2026-11-21T10:00:00Z", "participants": [
            {"id": "p1", "purpose": "customer", "messages": [{"id": "m1", "state": "connected"}]},
            {"id": "p2", "purpose": "agent", "messages": [{"id": "m2", "state": "connected"}]},
        ]})

    def patch_message_conversation(self, cid: str) -> Any:
        self.patched += 1
        return self.get_conversation(cid)


def test_disconnect_that_never_applies_fails_after_the_deadline(monkeypatch: pytest.MonkeyPatch, fake_redis) -> None:
    genesys = StubbornGenesys()
    sleeps: list[float] = []
    monkeypatch.setattr(conversation_end.time, "sleep", sleeps.append)
    clock = iter(range(0, 1000))
    monkeypatch.setattr(conversation_end.time, "monotonic", lambda: float(next(clock)))
    ctx = ExecutionContext(settings=Settings(end_verify_deadline_s=5), redis=fake_redis, command_id="c", attempt=1,
                           recovering=False, genesys_factory=lambda: genesys)  # type: ignore[arg-type,return-value]
    command = ConversationEnd(type="conversation.end", idempotency_key="k", conversation_id=CID)
    with pytest.raises(Refused) as refused:
        conversation_end.end_conversation(ctx, command)
    assert genesys.patched == 2  # re-sent once after three live reads; the deadline ended the second wait
    assert ("accepted 2 times but the conversation still reads live after 5s and 5 reads "
            "(customer=connected, agent=connected)") in refused.value.reason
    assert "conversation:communication:disconnect" in refused.value.hint
    assert sleeps and all(s > 0 for s in sleeps)


class LosesTheFirstDisconnect(StubbornGenesys):
    """The first PATCH answers 200 and is lost; the second one applies."""

    def get_conversation(self, cid: str) -> Conversation:
        conv = super().get_conversation(cid)
        if self.patched >= 2:
            conv.end_time = conv.start_time
            for participant in conv.participants or []:
                for leg in participant.messages or []:
                    leg.state = "disconnected"
        return conv


def test_a_lost_disconnect_is_sent_again_within_the_deadline(monkeypatch: pytest.MonkeyPatch, fake_redis) -> None:
    genesys = LosesTheFirstDisconnect()
    monkeypatch.setattr(conversation_end.time, "sleep", lambda s: None)
    ctx = ExecutionContext(settings=Settings(end_verify_deadline_s=30), redis=fake_redis, command_id="c", attempt=1,
                           recovering=False, genesys_factory=lambda: genesys)  # type: ignore[arg-type,return-value]
    command = ConversationEnd(type="conversation.end", idempotency_key="k", conversation_id=CID)
    result = conversation_end.end_conversation(ctx, command)
    assert result.final_state == "disconnected"
    assert genesys.patched == 2


@pytest.fixture
def fake_redis():
    import fakeredis

    return fakeredis.FakeRedis(decode_responses=True)
