"""Legacy Guest Chat (ACD Web Chat v2) event-stream frames as pydantic models.

Only the stream is here: the REST calls and their bodies are :mod:`genesys.operations` and
:mod:`genesys.models`. The stream is the notification envelope ``{topicName, version, eventBody,
metadata{CorrelationId, type}}``; real captures spell ``CorrelationId`` with a capital C, so both
spellings are accepted. Event bodies name a member or conversation by ``{id}`` alone (no displayName,
role or selfUri), so these models have nothing else to read: a client learns who a member is by
fetching it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, JsonValue, ValidationError
from pydantic.alias_generators import to_camel

HEARTBEAT_TOPIC = "channel.metadata"
SOCKET_CLOSING_TOPIC = "v2.system.socket_closing"
_CHAT_TOPIC = re.compile(r"^v2\.conversations\.chats\.(?P<conversation>[^.]+)\.(?P<kind>messages|members)$")


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


# --- event bodies: members are named by id only ---------------------------------------------------


class EntityRef(_Wire):
    """A conversation or member as the stream names it: ``{id}``, never its name, role or selfUri."""

    id: str


class StreamMember(_Wire):
    """The ``member`` of a member-change: ``{id, state}``. Who it is (role, name) is not on the stream:
    ``GET .../members/{memberId}`` tells (:func:`genesys.operations.get_guest_chat_member`)."""

    id: str
    state: Literal["ALERTING", "CONNECTED", "DISCONNECTED"] | None = None


class StreamMessage(_Wire):
    """A chat line (or a ``member-join``/``member-leave`` system line for ``sender``)."""

    id: str
    conversation: EntityRef | None = None
    sender: EntityRef
    body: str = Field(default="", repr=False)
    body_type: str = "standard"
    timestamp: str | None = None  # kept as text: junk must not lose the frame (see guest.common.parse_time)


class StreamTyping(_Wire):
    id: str | None = None
    conversation: EntityRef | None = None
    sender: EntityRef
    timestamp: str | None = None


class MemberChange(_Wire):
    conversation: EntityRef | None = None
    member: StreamMember
    timestamp: str | None = None


class Heartbeat(_Wire):
    message: str = ""


class SocketClosing(_Wire):
    """``v2.system.socket_closing``: the server will drop the socket within about a minute."""


class UnknownStreamFrame(_Wire):
    pass


class StreamMetadata(_Wire):
    correlation_id: str | None = Field(default=None, validation_alias=AliasChoices("CorrelationId", "correlationId"))
    type: str | None = None


class StreamEnvelope(_Wire):
    topic_name: str
    version: str | None = None
    event_body: JsonValue = None
    metadata: StreamMetadata | None = None


StreamBody = StreamMessage | StreamTyping | MemberChange | Heartbeat | SocketClosing | UnknownStreamFrame


@dataclass(frozen=True)
class StreamFrame:
    topic: str
    conversation_id: str | None  # from the topic, for chat topics
    body: StreamBody

    @property
    def kind(self) -> str:
        return type(self.body).__name__


class StreamFrameError(ValueError):
    """Not a valid event-stream frame; the message never quotes the frame."""


def parse_stream_frame(data: str | bytes) -> StreamFrame:
    """Decode by topic, then ``metadata.type``; unknown topics and types are not errors."""
    try:
        envelope = StreamEnvelope.model_validate(json.loads(data))
    except (ValueError, ValidationError) as exc:
        raise StreamFrameError(f"not a Guest Chat stream frame ({type(exc).__name__})") from None
    topic = envelope.topic_name
    kind = envelope.metadata.type if envelope.metadata else None
    raw = envelope.event_body if envelope.event_body is not None else {}
    model: type[_Wire] = UnknownStreamFrame
    conversation_id = None
    if topic == HEARTBEAT_TOPIC:
        model = Heartbeat
    elif topic == SOCKET_CLOSING_TOPIC:
        model = SocketClosing
    elif match := _CHAT_TOPIC.match(topic):
        conversation_id = match["conversation"]
        if match["kind"] == "messages" and kind in (None, "message"):
            model = StreamMessage
        elif match["kind"] == "messages" and kind == "typing-indicator":
            model = StreamTyping
        elif match["kind"] == "members":
            model = MemberChange
    try:
        body = model.model_validate(raw)
    except ValidationError as exc:
        raise StreamFrameError(f"invalid {model.__name__} on {topic} ({exc.error_count()} errors)") from None
    return StreamFrame(topic=topic, conversation_id=conversation_id, body=body)  # type: ignore[arg-type]
