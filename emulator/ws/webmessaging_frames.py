"""Web Messaging guest frames as the emulator reads and writes them.

Server frames are ``{type, class, code, body, tracingId}`` (``contracts/genesys-webmessaging-guest
.swagger.json``). Their bodies are the guest package's models (:mod:`guest.webmessaging_frames`);
where the server writes more than a client reads, a subclass here adds it (SessionResponse's
``allowedMedia``; the ``name``/``message`` the contract requires of TooManyRequestsErrorMessage).
StructuredMessage bodies, the frames of every chat message (several per guest message, each sent
to every socket of the session), are the exception: they are written directly as the dict that
model would dump to (:data:`Body`), because building and dumping the models cost more than the rest
of a message's handling. Two wire habits of Genesys are kept: whole numbers are integers
(``"expirationDate": 1700000000``, not ``1700000000.0``, which typed clients reading a Long refuse),
and empty lists and objects inside a body are left out. Class ``string`` error frames carry a bare
text body and the error in ``code``, as real frames do, although the contract's BaseMessage declares
``body`` an object.

Client requests are read leniently (:class:`ClientRequest`): the guest package's request models are
strict because we author them, but a server must take what any SDK sends.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.alias_generators import to_camel

from emulator.state.model import Conversation, StoredMessage
from emulator.state.webmessaging import HistoryItem, SessionEvent, WebMessagingSession
from genesys.models import WebMessagingMessage
from guest.common import iso_time
from guest.webmessaging_frames import (
    ConnectionClosedEvent,
    SessionClearedEvent,
    SessionExpiredEvent,
    SessionResponse,
    TooManyRequestsErrorMessage,
)

MAX_TEXT_BYTES = 4096
MAX_CUSTOM_DATA_BYTES = 2048
TYPING_DURATION_MS = 5000
MAX_FILE_SIZE_KB = 10240
BLOCKED_EXTENSIONS = (".bat", ".cmd", ".com", ".cpl", ".exe", ".jar", ".js", ".msi", ".scr", ".vbs")
READ_ONLY_TEXT = "Session is read-only, no new messages allowed"

FrameType = Literal["response", "message"]


class RequestRefused(Exception):
    """A request answered with a class ``string`` error frame (``code`` + text)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code}")
        self.code = code
        self.text = text


class TooManyRequests(Exception):
    """A request answered with a 429 TooManyRequestsErrorMessage."""

    def __init__(self, retry_after_s: int, text: str) -> None:
        super().__init__("429")
        self.retry_after_s = retry_after_s
        self.text = text


# --- client -> server ------------------------------------------------------------------------------
class _Lenient(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class RequestPresence(_Lenient):
    type: str


class RequestEvent(_Lenient):
    event_type: str
    presence: RequestPresence | None = None


class RequestMessage(_Lenient):
    type: str | None = None  # an attachment-only message may omit it
    text: str | None = Field(default=None, repr=False)
    # Factories, not ``[]``/``{}`` defaults: pydantic deep-copies a mutable default on every request.
    events: list[RequestEvent] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)


class RequestChannelMetadata(_Lenient):
    custom_attributes: dict[str, str] = Field(default_factory=dict, repr=False)


class RequestChannel(_Lenient):
    metadata: RequestChannelMetadata | None = None


class ClientRequest(_Lenient):
    """Any client frame: ``action`` decides which of the fields matter."""

    action: str
    token: str | None = Field(default=None, repr=False)
    tracing_id: str | None = None
    deployment_id: str | None = None
    start_new: bool = False
    close_all_connections: bool = False
    message: RequestMessage | None = None
    channel: RequestChannel | None = None

    @property
    def custom_attributes(self) -> dict[str, str]:
        metadata = self.channel.metadata if self.channel else None
        return metadata.custom_attributes if metadata else {}


# --- server-side bodies the guest package does not write -------------------------------------------
class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class FileType(_Wire):
    type: str


class FileUploadMode(_Wire):
    file_types: list[FileType]
    max_file_size_kb: int = Field(alias="maxFileSizeKB")


class AllowedMedia(_Wire):
    inbound: FileUploadMode


ALLOWED_MEDIA = AllowedMedia(
    inbound=FileUploadMode(file_types=[FileType(type="*/*")], max_file_size_kb=MAX_FILE_SIZE_KB)
)


class ServerSessionResponse(SessionResponse):
    allowed_media: AllowedMedia | None = None
    blocked_extensions: list[str] | None = None


class ServerTooManyRequests(TooManyRequestsErrorMessage):
    """Genesys sends ``{retryAfter, errorCode, errorMessage}``; the contract also requires ``name``
    and ``message`` (a serialized JS Error), so both are written."""

    name: str = "TooManyRequestsError"
    message: str


class GetConfigurationResponse(_Wire):
    allowed_media: AllowedMedia
    blocked_extensions: list[str]
    max_custom_data_bytes: int
    message_routing_enabled: bool
    session_duration_seconds: int


# --- encoding ------------------------------------------------------------------------------------------
# A body as it goes on the wire: camelCase keys, no null and no empty list or object inside.
Body = dict[str, JsonValue]

# Built once: json.dumps with non-default separators builds an encoder on every call. ASCII-escaped
# (json.dumps' default), as frames have always been written.
_JSON = json.JSONEncoder(separators=(",", ":"))


def encode(
    frame_type: FrameType, cls: str, body: BaseModel | Body | str, *, code: int = 200, tracing_id: str | None = None
) -> str:
    """One server frame as text. ``body``: a model (dumped and tidied here), a :data:`Body` built as
    written (StructuredMessage), or the bare text of a class ``string`` error."""
    raw: JsonValue = (
        _tidy(body.model_dump(mode="json", by_alias=True, exclude_none=True)) if isinstance(body, BaseModel) else body
    )
    # The envelope is built as a dict (in Envelope's field order and aliases): validating and dumping an
    # Envelope would walk the already dumped body twice more, on every frame.
    envelope: Body = {"type": frame_type, "class": cls, "code": code, "body": raw}
    if tracing_id is not None:
        envelope["tracingId"] = tracing_id
    return _JSON.encode(envelope)


def _tidy(value: JsonValue) -> JsonValue:
    """Whole floats as integers; no empty lists or objects inside (the root stays, e.g. ``{}``)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _tidy(v) for k, v in value.items() if v not in ([], {})}
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    return value


def error(code: int, text: str, tracing_id: str | None) -> str:
    return encode("response", "string", text, code=code, tracing_id=tracing_id)


def too_many_requests(retry_after_s: int, text: str, tracing_id: str | None) -> str:
    body = ServerTooManyRequests(retry_after=retry_after_s, error_code=4029, error_message=text, message=text)
    return encode("response", "TooManyRequestsErrorMessage", body, code=429, tracing_id=tracing_id)


def connection_closed() -> str:
    return encode("message", "ConnectionClosedEvent", ConnectionClosedEvent())


def session_cleared(tracing_id: str | None) -> str:
    return encode("message", "SessionClearedEvent", SessionClearedEvent(), tracing_id=tracing_id)


def session_expired() -> str:
    return encode("message", "SessionExpiredEvent", SessionExpiredEvent())


def session_response(
    session: WebMessagingSession, *, connected: bool, new_session: bool, duration_s: int, cleared: bool | None = None
) -> ServerSessionResponse:
    return ServerSessionResponse(
        connected=connected,
        new_session=new_session,
        read_only=session.read_only,
        cleared_existing_session=cleared,
        allowed_media=ALLOWED_MEDIA,
        blocked_extensions=list(BLOCKED_EXTENSIONS),
        max_custom_data_bytes=MAX_CUSTOM_DATA_BYTES,
        duration_seconds=duration_s,
        expiration_date=int(session.expires_at) if session.expires_at else None,
    )


def configuration(duration_s: int) -> GetConfigurationResponse:
    return GetConfigurationResponse(
        allowed_media=ALLOWED_MEDIA,
        blocked_extensions=list(BLOCKED_EXTENSIONS),
        max_custom_data_bytes=MAX_CUSTOM_DATA_BYTES,
        message_routing_enabled=True,
        session_duration_seconds=duration_s,
    )


# --- StructuredMessage bodies ------------------------------------------------------------------------
# Written as guest.webmessaging_frames.StructuredMessage (and its MessagingChannel, Recipient,
# MessageEvent) dump with by_alias and exclude_none, then tidied: the same keys in the same order.
def _time(at: datetime) -> str:
    return iso_time(at.timestamp())


def _channel(message_id: str, at: datetime, sender: Body | None = None) -> Body:
    # Genesys' ids: ``id`` is 32 hex digits, ``channel.messageId`` a UUID; both name the same message.
    channel: Body = {"time": _time(at), "type": "Private", "messageId": message_id}
    if sender is not None:
        channel["from"] = sender
    return channel


def _hex(uuid_text: str) -> str:
    return uuid_text.replace("-", "")


def _structured(
    kind: str,
    message_id: str,
    direction: str,
    channel: Body,
    *,
    text: str | None = None,
    events: list[JsonValue] | None = None,
    metadata: dict[str, JsonValue] | None = None,
    originating_entity: str | None = None,
) -> Body:
    """A StructuredMessage body in the model's field order, leaving out what is None or empty."""
    body: Body = {"type": kind, "id": _hex(message_id)}
    if text is not None:
        body["text"] = text
    body["direction"] = direction
    body["channel"] = channel
    if events:
        body["events"] = events
    if metadata:
        body["metadata"] = metadata
    if originating_entity is not None:
        body["originatingEntity"] = originating_entity
    return body


def structured(conv: Conversation, message: StoredMessage) -> Body:
    """A stored message of a guest's conversation: Inbound (the guest's own) or Outbound."""
    if message.direction == "inbound":
        return _structured("Text", message.id, "Inbound", _channel(message.id, message.timestamp), text=message.text)
    sender = conv.participant(message.participant_id)
    human = sender is not None and sender.purpose == "agent"
    name = (sender.name if sender else None) or ""
    first, _, last = name.partition(" ")
    return _structured(
        "Text",
        message.id,
        "Outbound",
        _channel(message.id, message.timestamp, {"nickname": name, "firstName": first, "lastName": last}),
        text=message.text,
        originating_entity="Human" if human else "Bot",
    )


def presence(event: SessionEvent) -> Body:
    """A Presence event: the guest's Join (Inbound), the agent's or flow's Disconnect (Outbound)."""
    return _structured(
        "Event",
        event.id,
        "Inbound" if event.direction == "Inbound" else "Outbound",
        _channel(event.id, event.at),
        events=[{"eventType": "Presence", "presence": {"type": event.presence}}],
        metadata={"readOnly": "true"} if event.read_only else None,
    )


def agent_typing(message_id: str, at: datetime) -> Body:
    return _structured(
        "Event",
        message_id,
        "Outbound",
        _channel(message_id, at),
        events=[{"eventType": "Typing", "typing": {"type": "On", "duration": TYPING_DURATION_MS}}],
    )


def echo_reply(
    message_id: str, at: datetime, text: str, session: WebMessagingSession, duration_s: int, metadata: dict[str, str]
) -> Body:
    """The answer to ``echo``: the text back, with the session's lifetime as string metadata (and the
    request's own metadata, e.g. the health-check ``customMessageId`` older servers echoed)."""
    expiry = {"expirationDate": str(int(session.expires_at))} if session.expires_at else {}
    return _structured(
        "Text",
        message_id,
        "Inbound",
        _channel(message_id, at),
        text=text,
        metadata={**metadata, "durationSeconds": str(duration_s), **expiry},
    )


def history_entity(item: HistoryItem) -> WebMessagingMessage:
    """One line of ``GET /api/v2/webmessaging/messages``: the same message the socket carried."""
    return WebMessagingMessage.model_validate(presence(item) if isinstance(item, SessionEvent) else structured(*item))
