"""Legacy Guest Chat (ACD Web Chat v2): REST bodies and event-stream frames as pydantic models.

REST field names follow ``contracts/genesys-platform-slice.swagger.json`` (CreateWebChatConversation*,
CreateWebChatMessageRequest, WebChatMessage, WebChatMemberInfo, WebChatTyping). The event stream is
the notification envelope ``{topicName, version, eventBody, metadata{CorrelationId, type}}``; real
captures spell ``CorrelationId`` with a capital C, so both spellings are accepted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, JsonValue, SecretStr, ValidationError
from pydantic.alias_generators import to_camel

HEARTBEAT_TOPIC = "channel.metadata"
SOCKET_CLOSING_TOPIC = "v2.system.socket_closing"
_CHAT_TOPIC = re.compile(r"^v2\.conversations\.chats\.(?P<conversation>[^.]+)\.(?P<kind>messages|members)$")


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class _Outgoing(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    def to_json(self) -> dict[str, JsonValue]:
        """The request body as JSON-ready data (what httpx's ``json=`` takes)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- REST requests ------------------------------------------------------------------------------


class WebChatRoutingTarget(_Outgoing):
    target_type: Literal["QUEUE"] = "QUEUE"
    target_address: str  # the queue NAME
    skills: list[str] | None = None
    language: str | None = None
    priority: int | None = None


class GuestMemberInfo(_Outgoing):
    display_name: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone_number: str | None = None
    avatar_image_url: str | None = None
    custom_fields: dict[str, str] | None = Field(default=None, repr=False)


class CreateWebChatConversationRequest(_Outgoing):
    organization_id: str
    deployment_id: str
    routing_target: WebChatRoutingTarget
    member_info: GuestMemberInfo


class CreateWebChatMessageRequest(_Outgoing):
    body: str = Field(repr=False)
    body_type: Literal["standard", "notice", "member-join", "member-leave", "media-request"] = "standard"


# --- REST responses and stream bodies -----------------------------------------------------------


class WebChatMemberInfo(_Wire):
    """A member as the event stream and REST report it; stream frames often carry only ``id``."""

    id: str
    display_name: str | None = None
    role: Literal["AGENT", "CUSTOMER", "WORKFLOW", "ACD"] | None = None
    state: Literal["ALERTING", "CONNECTED", "DISCONNECTED"] | None = None


class CreateWebChatConversationResponse(_Wire):
    id: str
    jwt: SecretStr
    event_stream_uri: SecretStr  # wss://.../v1/token/<jwt>: the token is in the path
    member: WebChatMemberInfo


class ConversationRef(_Wire):
    id: str


class WebChatMessage(_Wire):
    id: str
    conversation: ConversationRef | None = None
    sender: WebChatMemberInfo
    body: str = Field(default="", repr=False)
    body_type: str = "standard"
    timestamp: str | None = None


class WebChatMessageEntityList(_Wire):
    entities: list[WebChatMessage] = Field(default_factory=list)
    next: str | None = None


class WebChatTyping(_Wire):
    id: str | None = None
    conversation: ConversationRef | None = None
    sender: WebChatMemberInfo
    timestamp: str | None = None


class MemberChange(_Wire):
    conversation: ConversationRef | None = None
    member: WebChatMemberInfo
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


StreamBody = WebChatMessage | WebChatTyping | MemberChange | Heartbeat | SocketClosing | UnknownStreamFrame


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
            model = WebChatMessage
        elif match["kind"] == "messages" and kind == "typing-indicator":
            model = WebChatTyping
        elif match["kind"] == "members":
            model = MemberChange
    try:
        body = model.model_validate(raw)
    except ValidationError as exc:
        raise StreamFrameError(f"invalid {model.__name__} on {topic} ({exc.error_count()} errors)") from None
    return StreamFrame(topic=topic, conversation_id=conversation_id, body=body)  # type: ignore[arg-type]
