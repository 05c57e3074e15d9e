"""Guest Chat event-stream frames as the emulator writes them.

The notification-service envelope ``{topicName, version: "2", eventBody, metadata: {CorrelationId,
type}}`` (capital C, as in real captures) on ``v2.conversations.chats.{id}.members`` (member-change)
and ``v2.conversations.chats.{id}.messages`` (message, typing-indicator), and the bare
``channel.metadata`` frames (heartbeat, pong). Bodies are the guest package's stream models: like
Genesys, they name the sender, member and conversation by ``{id}`` alone (no displayName, role or
selfUri), so a client learns who a member is only from ``GET .../members/{memberId}``. A message's
other fields are those the REST API returns for it (:func:`emulator.views.web_chat_message`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from emulator.state.model import Communication, Conversation, StoredMessage, new_id
from guest.common import iso_time
from guest.guestchat_frames import (
    HEARTBEAT_TOPIC,
    SOCKET_CLOSING_TOPIC,
    EntityRef,
    Heartbeat,
    MemberChange,
    StreamMember,
    StreamMessage,
    StreamTyping,
)

HEARTBEAT = "WebSocket Heartbeat"
PONG = "pong"

MemberState = Literal["ALERTING", "CONNECTED", "DISCONNECTED"]


class _Metadata(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)

    correlation_id: str = Field(serialization_alias="CorrelationId")
    type: str


class _ChatFrame(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)

    topic_name: str = Field(serialization_alias="topicName")
    version: str = "2"
    event_body: JsonValue = Field(serialization_alias="eventBody")
    metadata: _Metadata


def _chat(conv: Conversation, topic: Literal["members", "messages"], kind: str, body: BaseModel) -> str:
    frame = _ChatFrame(
        topic_name=f"v2.conversations.chats.{conv.id}.{topic}",
        event_body=body.model_dump(mode="json", by_alias=True, exclude_none=True),
        metadata=_Metadata(correlation_id=new_id(), type=kind),
    )
    return frame.model_dump_json()


def channel_metadata(message: str) -> str:
    """A heartbeat (``WebSocket Heartbeat``) or the answer to ``{"message": "ping"}`` (``pong``)."""
    body = {"topicName": HEARTBEAT_TOPIC, "eventBody": Heartbeat(message=message).model_dump()}
    return json.dumps(body, separators=(",", ":"))


def socket_closing() -> str:
    """``v2.system.socket_closing``: the server will close the socket soon (the body is a guess)."""
    return json.dumps({"topicName": SOCKET_CLOSING_TOPIC, "eventBody": {}}, separators=(",", ":"))


def _rest_time(at: datetime) -> str:
    """A time as the REST API's JSON writes it, so a line reads the same on the stream and in history."""
    return at.isoformat().replace("+00:00", "Z")


def member_change(conv: Conversation, member_id: str, state: MemberState, at: datetime) -> str:
    body = MemberChange(
        conversation=EntityRef(id=conv.id),
        member=StreamMember(id=member_id, state=state),
        timestamp=iso_time(at.timestamp()),
    )
    return _chat(conv, "members", "member-change", body)


def message(conv: Conversation, stored: StoredMessage) -> str:
    """A stored line: what history holds for it, its sender and conversation by id."""
    body = StreamMessage(
        id=stored.id,
        conversation=EntityRef(id=conv.id),
        sender=EntityRef(id=stored.communication_id),
        body=stored.text,
        body_type=stored.body_type,
        timestamp=_rest_time(stored.timestamp),
    )
    return _chat(conv, "messages", "message", body)


def member_join(conv: Conversation, leg: Communication, at: datetime) -> str:
    """The system line announcing a member (not stored: history holds what members wrote)."""
    body = StreamMessage(
        id=new_id(),
        conversation=EntityRef(id=conv.id),
        sender=EntityRef(id=leg.id),
        body="",
        body_type="member-join",
        timestamp=_rest_time(at),
    )
    return _chat(conv, "messages", "message", body)


def typing(conv: Conversation, member_id: str, at: datetime) -> str:
    body = StreamTyping(
        id=new_id(),
        conversation=EntityRef(id=conv.id),
        sender=EntityRef(id=member_id),
        timestamp=iso_time(at.timestamp()),
    )
    return _chat(conv, "messages", "typing-indicator", body)
