"""Web Messaging guest websocket frames (the "shyrka" protocol) as pydantic models.

Field names follow ``contracts/genesys-webmessaging-guest.swagger.json``: Python attributes are
snake_case with camelCase aliases, and frames are written with ``by_alias=True``. Requests are
strict (``extra="forbid"``) because we author them; server frames are lenient (unknown fields are
ignored) because Genesys adds fields without notice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic.alias_generators import to_camel

# The platform API's journey context, one model for both APIs; the guest contract also wants its
# ``customerSession``, which the platform's leaves optional. History (REST) is read as the platform's
# WebMessagingMessage and turned into this module's StructuredMessage (:meth:`StructuredMessage.from_history`).
from genesys.models import JourneyContext, WebMessagingMessage

# The transport SDK's health-check id (base64 "HealthCheckMessageId"); older servers echo it back
# in ``metadata.customMessageId``, which is how an echo reply is told apart from chat.
HEALTH_CHECK_ID = "SGVhbHRoQ2hlY2tNZXNzYWdlSWQ="


class _Outgoing(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    def to_text(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


class _Incoming(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class _Body(_Incoming):
    """A frame body; most may repeat the request's ``tracingId``."""

    tracing_id: str | None = None


# --- Client -> server ---------------------------------------------------------------------------


class ConfigureSessionRequest(_Outgoing):
    action: Literal["configureSession"] = "configureSession"
    token: str = Field(repr=False)
    deployment_id: str
    tracing_id: str | None = None
    start_new: bool | None = None
    journey_context: JourneyContext | None = None


class EventTyping(_Outgoing):
    type: Literal["On"] = "On"


class EventPresence(_Outgoing):
    type: Literal["Join", "Clear"]


class OutgoingEvent(_Outgoing):
    event_type: Literal["Typing", "Presence"]
    typing: EventTyping | None = None
    presence: EventPresence | None = None


TYPING_ON = OutgoingEvent(event_type="Typing", typing=EventTyping())
PRESENCE_JOIN = OutgoingEvent(event_type="Presence", presence=EventPresence(type="Join"))
PRESENCE_CLEAR = OutgoingEvent(event_type="Presence", presence=EventPresence(type="Clear"))


class IncomingNormalizedMessage(_Outgoing):
    """The ``message`` of onMessage/echo ("incoming" from Genesys' point of view)."""

    type: Literal["Text", "Event"]
    text: str | None = Field(default=None, repr=False)
    events: list[OutgoingEvent] | None = None
    metadata: dict[str, str] | None = None


class ChannelMetadata(_Outgoing):
    custom_attributes: dict[str, str] = Field(repr=False)


class OutgoingChannel(_Outgoing):
    metadata: ChannelMetadata


class SendMessageRequest(_Outgoing):
    action: Literal["onMessage"] = "onMessage"
    token: str = Field(repr=False)
    tracing_id: str
    time: str
    message: IncomingNormalizedMessage
    channel: OutgoingChannel | None = None


class SendEchoRequest(_Outgoing):
    action: Literal["echo"] = "echo"
    token: str = Field(repr=False)
    tracing_id: str
    message: IncomingNormalizedMessage = IncomingNormalizedMessage(
        type="Text", text="ping", metadata={"customMessageId": HEALTH_CHECK_ID}
    )


class GetJwtRequest(_Outgoing):
    action: Literal["getJwt"] = "getJwt"
    token: str = Field(repr=False)
    tracing_id: str


class CloseSessionRequest(_Outgoing):
    action: Literal["closeSession"] = "closeSession"
    token: str = Field(repr=False)
    tracing_id: str
    close_all_connections: bool = True


# --- Server -> client bodies --------------------------------------------------------------------


class SessionResponse(_Body):
    connected: bool
    new_session: bool = False
    read_only: bool = False
    cleared_existing_session: bool | None = None
    max_custom_data_bytes: float | None = None
    duration_seconds: float | None = None
    expiration_date: float | None = None  # epoch seconds
    auto_started: bool | None = None


class Recipient(_Incoming):
    nickname: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class MessagingChannel(_Incoming):
    time: str | None = None
    type: str | None = None
    message_id: str | None = None
    from_: Recipient | None = Field(default=None, alias="from")


class MessageContent(_Incoming):
    content_type: str


class TypingInfo(_Incoming):
    type: str
    duration: float | None = Field(default=None, validation_alias=AliasChoices("duration", "durationMs"))


class PresenceInfo(_Incoming):
    type: str


class MessageEvent(_Incoming):
    event_type: str
    typing: TypingInfo | None = None
    presence: PresenceInfo | None = None


class StructuredMessage(_Body):
    """A chat message or event: the socket's frame body, and what a history entity becomes
    (:meth:`from_history`) so that a backfilled message is handled like a live one."""

    type: str
    id: str | None = None
    text: str | None = Field(default=None, repr=False)
    direction: Literal["Inbound", "Outbound"] | None = None
    channel: MessagingChannel | None = None
    content: list[MessageContent] = Field(default_factory=list)
    events: list[MessageEvent] = Field(default_factory=list)
    metadata: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    originating_entity: str | None = None

    @classmethod
    def from_history(cls, entity: WebMessagingMessage) -> StructuredMessage:
        """A history entity (``GET /api/v2/webmessaging/messages``, the platform's WebMessagingMessage)
        as the frame the socket carried for the same message: same ids, text, direction, time instant
        and metadata. Never fails on what the REST model accepted: a direction other than
        Inbound/Outbound becomes None and a missing type or contentType "", which the machine ignores
        as it ignores unknown values (history events have no typing: the platform contract has none).
        """
        channel = entity.channel
        return cls(
            type=entity.type or "",
            id=entity.id,
            text=entity.text,
            direction=entity.direction if entity.direction in ("Inbound", "Outbound") else None,
            channel=None if channel is None else MessagingChannel(
                # parse_time reads this ISO text back to the very instant the REST model parsed.
                time=None if channel.time is None else channel.time.isoformat(),
                message_id=channel.message_id,
                from_=None if channel.from_ is None else Recipient(
                    nickname=channel.from_.nickname,
                    first_name=channel.from_.first_name,
                    last_name=channel.from_.last_name,
                ),
            ),
            content=[MessageContent(content_type=c.content_type or "") for c in entity.content or ()],
            events=[
                MessageEvent(
                    event_type=e.event_type,
                    presence=None if e.presence is None else PresenceInfo(type=e.presence.type),
                )
                for e in entity.events or ()
            ],
            metadata=dict(entity.metadata or {}),
            originating_entity=entity.originating_entity,
        )

    @property
    def dedup_key(self) -> str | None:
        """``channel.messageId ?? id``: what history uses; bot messages have no channel.messageId."""
        return (self.channel.message_id if self.channel else None) or self.id

    @property
    def time(self) -> str | None:
        return self.channel.time if self.channel else None

    def meta(self, key: str) -> str | None:
        value = self.metadata.get(key)
        return None if value is None else str(value)

    @property
    def read_only(self) -> bool:
        return (self.meta("readOnly") or "").lower() == "true"


class JwtResponse(_Body):
    jwt: str = Field(repr=False)
    exp: float


class TooManyRequestsErrorMessage(_Body):
    retry_after: float
    error_code: int | None = None
    error_message: str | None = None


class ErrorMessage(_Body):
    """Body of class ``Error``."""

    error_code: int | None = None
    error_message: str | None = None


class ErrorText(_Body):
    """Body of class ``string``: the error text; the frame's ``code`` is the error code."""

    text: str


class ConnectionClosedEvent(_Body):
    reason_code: str | None = None
    reason: str | None = None  # what the transport SDK reads ("signedIn")


class SessionExpiredEvent(_Body):
    pass


class SessionClearedEvent(_Body):
    pass


class LogoutEvent(_Body):
    pass


class UnknownBody(_Body):
    """A class we do not handle (attachments, configuration, future additions)."""


ServerBody = (
    SessionResponse
    | StructuredMessage
    | JwtResponse
    | TooManyRequestsErrorMessage
    | ErrorMessage
    | ErrorText
    | ConnectionClosedEvent
    | SessionExpiredEvent
    | SessionClearedEvent
    | LogoutEvent
    | UnknownBody
)

_BODY_BY_CLASS: dict[str, type[_Body]] = {
    "SessionResponse": SessionResponse,
    "StructuredMessage": StructuredMessage,
    "JwtResponse": JwtResponse,
    "TooManyRequestsErrorMessage": TooManyRequestsErrorMessage,
    "Error": ErrorMessage,
    "ConnectionClosedEvent": ConnectionClosedEvent,
    "SessionExpiredEvent": SessionExpiredEvent,
    "SessionClearedEvent": SessionClearedEvent,
    "LogoutEvent": LogoutEvent,
}


class Envelope(_Incoming):
    """``{type, class, code, body, tracingId}``; ``body`` stays raw until ``class`` is known."""

    type: str
    class_: str = Field(alias="class")
    code: int
    body: Any = None  # already JSON (json.loads made it): validating it as JsonValue would walk it twice
    tracing_id: str | None = None


@dataclass(frozen=True)
class ServerFrame:
    """A decoded server frame: the envelope's fields plus a typed body."""

    type: str  # "response" answers a request; "message" is unsolicited
    kind: str  # the frame's class
    code: int
    tracing_id: str | None
    body: ServerBody

    @property
    def is_error(self) -> bool:
        return self.code != 200


class FrameError(ValueError):
    """A server frame that is not JSON or not a valid envelope/body. The message never quotes the
    frame, which may hold customer text."""


def parse_server_frame(data: str | bytes) -> ServerFrame:
    """Decode a server frame by ``class`` first; unknown classes decode to ``UnknownBody``."""
    try:
        envelope = Envelope.model_validate(json.loads(data))
    except (ValueError, ValidationError) as exc:
        raise FrameError(f"not a Web Messaging frame ({type(exc).__name__})") from None
    body: _Body
    try:
        if isinstance(envelope.body, str):
            # class "string" (and any class whose body is a bare text) is an error description.
            body = ErrorText(text=envelope.body)
        elif (model := _BODY_BY_CLASS.get(envelope.class_)) is None:
            body = UnknownBody()
        else:
            body = model.model_validate(envelope.body if envelope.body is not None else {})
    except ValidationError as exc:
        raise FrameError(f"invalid {envelope.class_} body ({exc.error_count()} errors)") from None
    tracing_id = envelope.tracing_id or body.tracing_id
    return ServerFrame(type=envelope.type, kind=envelope.class_, code=envelope.code, tracing_id=tracing_id, body=body)
