"""Sans-I/O state machine for one Web Messaging guest session (Genesys' current guest protocol).

Like python-websockets' ``protocol.py``, the machine owns no socket, task or clock. The I/O layer
(the guest worker) feeds it what happened and carries out what it asks:

    session.start(now)                         -> OpenSocket intent
    session.connection_made(now)               -> configureSession frame
    session.receive_text(frame, now)           -> events, maybe frames
    session.send_text(text, now) / end(now)    -> frames (when the session can take them)
    session.connection_lost(now)               -> Reconnecting event; timer() later asks OpenSocket
    session.rest_succeeded / rest_failed       -> results of FetchMessageHistory intents
    session.timer(now) at next_deadline()      -> reconnects, retries, echoes, reorder releases

and after every call drains ``data_to_send()`` (send these text frames, in order), then
``intents_to_run()``, then ``events_received()``. ``now`` is POSIX seconds (``time.time()``).

Guarantees:
- Guest messages go out strictly in order, one in flight; each is confirmed by the Inbound echo that
  carries its tracingId. A rate-limited (429) message is held and sent again, never dropped. After
  a reconnect the message that was in flight is looked up in history and re-sent only if absent.
- Agent messages are released once (dedup on ``channel.messageId ?? id``, bounded memory) and in
  ``channel.time`` order within ``reorder_window``; after a reconnect the gap is backfilled from
  history before anything newer is released.
- Echo (health check) replies never surface as chat.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from genesys import operations
from genesys.errors import GenesysError, GenesysTransportError
from genesys.models import WebMessagingMessageEntityList
from genesys.wire import Operation
from guest.common import (
    HISTORY_RETRIES,
    Backoff,
    Outbox,
    OutboxItem,
    RecentIds,
    Reconnector,
    ReorderBuffer,
    SansIOMachine,
    Throttle,
    earliest,
    iso_time,
    parse_time,
    retryable,
)
from guest.events import (
    AgentMessage,
    AgentTyping,
    CloseSocket,
    ConnectionClosed,
    ConversationDisconnected,
    GenesysCall,
    GuestEvent,
    GuestMessageConfirmed,
    OpenSocket,
    ProtocolError,
    RateLimited,
    SessionCleared,
    SessionExpired,
    SessionStarted,
    UnknownFrame,
)
from guest.ownmessage import OwnMessage
from guest.webmessaging_frames import (
    HEALTH_CHECK_ID,
    PRESENCE_CLEAR,
    PRESENCE_JOIN,
    TYPING_ON,
    ChannelMetadata,
    CloseSessionRequest,
    ConfigureSessionRequest,
    ConnectionClosedEvent,
    ErrorMessage,
    ErrorText,
    FrameError,
    GetJwtRequest,
    IncomingNormalizedMessage,
    JwtResponse,
    LogoutEvent,
    OutgoingChannel,
    OutgoingEvent,
    SendEchoRequest,
    SendMessageRequest,
    ServerFrame,
    SessionClearedEvent,
    SessionExpiredEvent,
    SessionResponse,
    StructuredMessage,
    TooManyRequestsErrorMessage,
    UnknownBody,
    parse_server_frame,
)

MAX_CUSTOM_DATA_BYTES = 2048
# Error codes that can only be about a guest message, so an error frame without a tracingId that
# carries one of them is pinned on the message in flight.
_MESSAGE_ERROR_CODES = frozenset({409, 429, 4011, 4013, 4029})
# An error without a tracingId this soon after a typing frame may be about the typing frame.
_TYPING_BLAME_WINDOW = 2.0
# Codes worth retrying configureSession for; any other refusal of configure is final.
_RETRYABLE_CONFIGURE_CODES = frozenset({408, 500, 502, 503, 504, 5000})


class WmState(StrEnum):
    NEW = "new"
    CONNECTING = "connecting"  # OpenSocket asked; waiting for connection_made / connection_lost
    CONFIGURING = "configuring"  # configureSession sent
    CONFIGURED = "configured"
    READ_ONLY = "read_only"  # conversation disconnected read-only: no more guest messages
    RECONNECTING = "reconnecting"  # socket lost; waiting out the backoff delay
    CLOSING = "closing"  # Presence Clear / closeSession sent
    CLOSED = "closed"
    EXPIRED = "expired"


_TERMINAL = frozenset({WmState.CLOSED, WmState.EXPIRED})
_OPEN = frozenset({WmState.CONFIGURED, WmState.READ_ONLY})


def _json_bytes(attributes: dict[str, str]) -> int:
    return len(json.dumps(attributes, separators=(",", ":"), ensure_ascii=False).encode())


class RelayCheckpoint(BaseModel):
    """What has been relayed, for a worker that restarts and resumes the same token: recent agent
    message ids and the newest relayed ``channel.time``. Persist ``session.checkpoint()``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seen_ids: list[str] = Field(default_factory=list)
    watermark: datetime | None = None


class WebMessagingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    deployment_id: str = Field(min_length=1)
    token: SecretStr = Field(description="Client-made session token (UUID); persist it to resume.")
    auto_start: bool = Field(default=False, description="Deployment has autoStart: send Presence Join.")
    custom_attributes: dict[str, str] = Field(default_factory=dict, repr=False)
    clear_on_end: bool = Field(default=True, description="Deployment has conversationClear enabled.")
    reorder_window: float = Field(default=1.0, ge=0)
    origin: str | None = Field(default=None, description="Origin header of the history GET (the socket's "
                               "too): Genesys checks it against the deployment's allowed domains.")
    dedup_capacity: int = Field(default=1024, ge=16)
    typing_interval: float = Field(default=5.0, ge=0)
    echo_interval: float = Field(default=30.0, ge=30, description="Genesys allows 2 echoes/minute.")
    echo_timeout: float = Field(default=10.0, gt=0)
    expiry_margin: float = Field(default=310.0, ge=0, description="Health-check this long before expiry.")
    request_timeout: float = Field(default=15.0, gt=0)
    confirm_timeout: float = Field(default=20.0, gt=0, description="No echo of a sent message by then: reconnect.")
    message_interval: float = Field(default=0.0, ge=0, description="At least this long between two sends of "
                                    "guest messages (the deployment's messages per second); 0: unpaced.")
    join_settle: float = Field(default=3.0, ge=0, description="Longest wait for the Presence Join echo.")
    reconnect_timeout: float = Field(default=300.0, gt=0)
    backoff: Backoff = Backoff()
    max_text_bytes: int = Field(default=4096, gt=0)
    history_page_size: int = Field(default=25, ge=1, le=100)
    history_max_pages: int = Field(default=4, ge=1, description="History GETs are limited to 10/min.")
    history_grace: float = Field(default=60.0, ge=0, description="Look back this far before the watermark.")
    checkpoint: RelayCheckpoint | None = None

    @field_validator("custom_attributes")
    @classmethod
    def _attributes_fit(cls, value: dict[str, str]) -> dict[str, str]:
        if _json_bytes(value) > MAX_CUSTOM_DATA_BYTES:
            raise ValueError(f"custom attributes exceed {MAX_CUSTOM_DATA_BYTES} bytes as JSON")
        return value


class FetchMessageHistory(GenesysCall):
    """One page of the session's history (:func:`genesys.operations.get_webmessaging_messages`, guest
    JWT); its answer is read as :class:`genesys.models.WebMessagingMessageEntityList`, whose entities
    become the stream's own StructuredMessage (:meth:`~guest.webmessaging_frames.StructuredMessage.from_history`),
    so a backfilled message is relayed like a live one."""

    page_number: int
    page_size: int
    jwt: SecretStr
    origin: str | None = None

    @property
    def operation(self) -> Operation[Any]:
        return operations.get_webmessaging_messages(
            jwt=self.jwt.get_secret_value(), page_size=self.page_size, page_number=self.page_number, origin=self.origin
        )


@dataclass
class _Pending:
    kind: str  # configure | join | echo | jwt | clear | close
    deadline: float


@dataclass
class _Backfill:
    not_before: datetime | None
    deadline: float
    page: int = 1
    request_id: str | None = None
    retries: int = 0
    retry_at: float | None = None  # a failed read is asked again then
    entities: list[StructuredMessage] = field(default_factory=list)


def _is_relayable(msg: StructuredMessage) -> bool:
    if msg.type in ("Text", "Structured"):
        return True
    return any(ev.presence is not None and ev.presence.type == "Disconnect" for ev in msg.events)


def _time_key(msg: StructuredMessage) -> datetime:
    return parse_time(msg.time) or datetime.max.replace(tzinfo=UTC)


def missed_outbound(
    entities: Iterable[StructuredMessage], seen: RecentIds, not_before: datetime | None = None
) -> list[StructuredMessage]:
    """History entities (pages in any order) -> the agent/bot messages not yet relayed, oldest first.

    Uses the live dedup key (``channel.messageId ?? id``) against ``seen`` and within the batch, so
    overlapping pages and messages that also arrived on the socket come out once. ``not_before``
    drops messages older than what was relayed before (keeps a restart from replaying history).
    Does not modify ``seen``.
    """
    picked: dict[str, StructuredMessage] = {}
    for msg in entities:
        key = msg.dedup_key
        if msg.direction != "Outbound" or not _is_relayable(msg) or key is None:
            continue
        if key in seen or key in picked:
            continue
        when = parse_time(msg.time)
        if not_before is not None and when is not None and when < not_before:
            continue
        picked[key] = msg
    return sorted(picked.values(), key=_time_key)


class WebMessagingSession(SansIOMachine):
    """One guest session on the Web Messaging websocket. See the module docstring for the API."""

    def __init__(
        self,
        config: WebMessagingConfig,
        *,
        rng: random.Random | None = None,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        super().__init__(rng=rng, new_id=new_id)
        self.config = config
        self.state = WmState.NEW
        self._token = config.token.get_secret_value()
        self._frames: list[str] = []

        self._outbox = Outbox()
        checkpoint = config.checkpoint or RelayCheckpoint()
        self._seen = RecentIds(config.dedup_capacity, checkpoint.seen_ids)
        self._watermark = checkpoint.watermark
        self._resume_from_checkpoint = config.checkpoint is not None
        self._own_ids = RecentIds(config.dedup_capacity)  # ids Genesys gave our confirmed messages
        self._last_own_time: datetime | None = None
        self._echo_ids = RecentIds(16)
        self._buffer: ReorderBuffer[StructuredMessage] = ReorderBuffer(config.reorder_window)
        self._typing = Throttle(config.typing_interval)
        self._echo = Throttle(config.echo_interval)
        self._last_typing_at: float | None = None

        self._pending: dict[str, _Pending] = {}
        self._connected = False
        self._configured_once = False
        self._reconnect = Reconnector(config.backoff, config.reconnect_timeout, rng or random.Random())
        self._configure_at: float | None = None
        self._in_flight_deadline: float | None = None
        self._expires_at: float | None = None
        self._expiry_echo_for: float | None = None
        self._echo_wanted = False
        self._custom_attributes = dict(config.custom_attributes)
        self._max_custom_bytes = MAX_CUSTOM_DATA_BYTES
        self._end_requested = False
        self._jwt: SecretStr | None = None
        self._jwt_exp = 0.0
        self._backfill: _Backfill | None = None

    # --- outputs ----------------------------------------------------------------------------

    def data_to_send(self) -> list[str]:
        """Text frames to send on the current socket, in order."""
        frames, self._frames = self._frames, []
        return frames

    def next_deadline(self) -> float | None:
        """When ``timer`` must be called next; None when nothing is scheduled."""
        if self.state in _TERMINAL:
            return None
        times = [self._reconnect.reconnect_at, self._configure_at, self._in_flight_deadline,
                 self._backfill_deadline() if self._backfill is not None else self._buffer.next_deadline(),
                 self._outbox.hold_ends, self._echo_due_at()]
        times += [p.deadline for p in self._pending.values()]
        return earliest(times)

    def checkpoint(self) -> RelayCheckpoint:
        return RelayCheckpoint(seen_ids=self._seen.snapshot(), watermark=self._watermark)

    @property
    def backfilling(self) -> bool:
        """A history backfill is under way (its pages, or the JWT they need, asked or still to ask)."""
        return self._backfill is not None

    @property
    def expires_at(self) -> float | None:
        """Session expiry (POSIX seconds) as last reported by Genesys."""
        return self._expires_at

    # --- inputs: commands -------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Ask for a socket; configureSession follows ``connection_made``. Idempotent."""
        if self.state is not WmState.NEW:
            return
        self.state = WmState.CONNECTING
        self._intents.append(OpenSocket())

    def send_text(self, text: str, now: float) -> str:
        """Queue a guest message; returns its tracingId (confirmation and rejection carry it)."""
        tracing_id = self._new_id()
        size = len(text.encode())
        if self.state in _TERMINAL or self._end_requested:
            self._reject(tracing_id, None, "session is closed")
        elif self.state is WmState.READ_ONLY:
            self._reject(tracing_id, 409, "session is read-only")
        elif not text.strip():
            self._reject(tracing_id, None, "message is empty")
        elif size > self.config.max_text_bytes:
            self._reject(tracing_id, 4011, f"message is {size} bytes; the limit is {self.config.max_text_bytes}")
        else:
            self._outbox.add(OutboxItem(tracing_id, text, now))
            self._pump(now)
        return tracing_id

    def send_typing(self, now: float) -> bool:
        """Send Typing On unless throttled (1 per ``typing_interval``); True when sent.

        Skipped while a guest message or Presence Join is unconfirmed: an error frame without a
        tracingId must be attributable to one request, and a typing hint then is moot anyway.
        """
        if (
            self.state is not WmState.CONFIGURED
            or not self._connected
            or self._backfill is not None
            or self._outbox.in_flight is not None
            or self._has_pending("join", "configure")
            or not self._typing.take(now)
        ):
            return False
        self._last_typing_at = now
        self._send_event(TYPING_ON, now)
        return True

    def end(self, now: float) -> None:
        """End the session after the queued messages: Presence Clear (if enabled), then closeSession."""
        if self.state in _TERMINAL:
            return
        self._end_requested = True
        if self.state is WmState.NEW:
            self._terminate(ConnectionClosed(reason="closed by guest", by_guest=True))
            return
        self._pump(now)

    # --- inputs: I/O ------------------------------------------------------------------------

    def connection_made(self, now: float) -> None:
        if self.state is not WmState.CONNECTING:
            # A socket we did not ask for (or that opened after the session ended): close it.
            self._intents.append(CloseSocket(reason="not expected"))
            return
        self._connected = True
        self._send_configure(now)
        self._pump(now)

    def connection_lost(self, now: float, *, http_status: int | None = None) -> None:
        """The socket closed or could not be opened (``http_status``: the refused upgrade's status)."""
        if self.state in _TERMINAL or (not self._connected and self.state is not WmState.CONNECTING):
            return  # already handled, e.g. we closed it ourselves to reconnect
        self._drop_connection()
        if self.state is WmState.CLOSING:
            self._terminate(ConnectionClosed(reason="closed by guest", by_guest=True))
        elif http_status == 403:
            # Deployment inactive or origin not allowed: retrying cannot help (the SDK does not).
            self._terminate(ConnectionClosed(reason="websocket refused (403)"))
        else:
            self._schedule_reconnect(now)

    def receive_text(self, data: str | bytes, now: float) -> None:
        if self.state in _TERMINAL:
            return
        try:
            frame = parse_server_frame(data)
        except FrameError as exc:
            self._events.append(ProtocolError(reason=str(exc)))
        else:
            self._dispatch(frame, now)
        self._pump(now)

    def rest_succeeded(self, request_id: str, now: float, body: str | bytes) -> None:
        backfill = self._backfill
        if backfill is None or request_id != backfill.request_id:
            return  # a late answer to a request we gave up on
        try:
            page = WebMessagingMessageEntityList.model_validate_json(body)
        except ValidationError:
            self._events.append(ProtocolError(reason="history page did not parse"))
            self._finish_backfill(now)
            return
        entities = [StructuredMessage.from_history(e) for e in page.entities]
        backfill.entities.extend(entities)
        times = [t for t in (parse_time(e.time) for e in entities) if t is not None]
        more = (
            bool(entities)
            and backfill.not_before is not None
            and bool(times)
            and min(times) > backfill.not_before  # pages are newest first; the gap may go on
            and backfill.page < self.config.history_max_pages
            and (page.page_count is None or backfill.page < page.page_count)
        )
        if more:
            backfill.page += 1
            self._request_history_page(now)
        else:
            self._finish_backfill(now)
        self._pump(now)

    def rest_failed(self, request_id: str, now: float, error: GenesysError | GenesysTransportError) -> None:
        backfill = self._backfill
        if backfill is None or request_id != backfill.request_id:
            return
        status = error.status if isinstance(error, GenesysError) else None
        if status == 401:
            self._jwt = None  # the retry (or the next backfill) mints a fresh one
        retry_after = error.retry_after_s if isinstance(error, GenesysError) else None
        self._backfill_failed(now, "history fetch failed", status, retry_after,
                              may_pass=retryable(status) or status == 401)
        self._pump(now)

    def timer(self, now: float) -> None:
        if self.state in _TERMINAL:
            return
        if self.state is WmState.RECONNECTING and self._reconnect.due(now):
            self.state = WmState.CONNECTING
            self._intents.append(OpenSocket())
        for tracing_id, pending in list(self._pending.items()):
            if now >= pending.deadline and self._pending.pop(tracing_id, None) is not None:
                self._on_timeout(pending.kind, now)
                if self.state in _TERMINAL:
                    return
        if self._configure_at is not None and now >= self._configure_at and self._connected:
            self._configure_at = None
            self._send_configure(now)
        if self._in_flight_deadline is not None and now >= self._in_flight_deadline:
            self._force_reconnect(now, "message not confirmed")
        backfill = self._backfill
        if backfill is not None and backfill.retry_at is not None and now >= backfill.retry_at:
            backfill.retry_at = None
            self._read_history(now)
        elif backfill is not None and now >= backfill.deadline:
            self._events.append(ProtocolError(reason="history backfill timed out"))
            self._finish_backfill(now)
        self._pump(now)

    # --- frame handling ---------------------------------------------------------------------

    def _dispatch(self, frame: ServerFrame, now: float) -> None:
        body = frame.body
        match body:
            case SessionResponse():
                self._on_session_response(frame, body, now)
            case StructuredMessage():
                self._on_structured(frame, body, now)
            case JwtResponse():
                self._answered(frame.tracing_id, "jwt")
                self._jwt, self._jwt_exp = SecretStr(body.jwt), body.exp
                backfill = self._backfill
                if backfill is not None and backfill.request_id is None and backfill.retry_at is None:
                    self._request_history_page(now)
            case TooManyRequestsErrorMessage():
                self._on_error(now, frame.code, "rate limited", frame.tracing_id, body.retry_after)
            case ErrorText():
                self._on_error(now, frame.code, body.text, frame.tracing_id)
            case ErrorMessage():
                self._on_error(now, body.error_code or frame.code, body.error_message or "", frame.tracing_id)
            case ConnectionClosedEvent():
                if self.state is WmState.CLOSING:
                    self._terminate(ConnectionClosed(reason="closed by guest", by_guest=True))
                else:
                    reason = body.reason_code or body.reason or "closed by Genesys"
                    self._terminate(ConnectionClosed(reason=reason))
            case SessionExpiredEvent():
                self._expire(None)
            case SessionClearedEvent():
                self._events.append(SessionCleared())
                if self._answered(frame.tracing_id, "clear") is not None:
                    self._send_close(now)
            case LogoutEvent():
                self._terminate(ConnectionClosed(reason="logged out"))
            case UnknownBody():
                self._events.append(UnknownFrame(kind=frame.kind))

    def _on_session_response(self, frame: ServerFrame, body: SessionResponse, now: float) -> None:
        pending = self._answered(frame.tracing_id, "configure", "close")
        if pending is not None and pending.kind == "configure":
            self._on_configured(body, now)
        elif pending is not None or self.state is WmState.CLOSING:
            self._terminate(ConnectionClosed(reason="closed by guest", by_guest=True))
        else:
            self._events.append(ProtocolError(reason="unexpected SessionResponse"))

    def _on_configured(self, resp: SessionResponse, now: float) -> None:
        was_reconnect = self._configured_once
        self._configured_once = True
        self._reconnect.recovered()
        if resp.max_custom_data_bytes:
            self._max_custom_bytes = int(resp.max_custom_data_bytes)
        self._set_expiry(resp.expiration_date, resp.duration_seconds, now)
        self.state = WmState.READ_ONLY if resp.read_only else WmState.CONFIGURED
        self._events.append(
            SessionStarted(new_session=resp.new_session, resumed=was_reconnect, read_only=resp.read_only)
        )
        if resp.read_only:
            self._reject_queued(409, "session is read-only")
        elif resp.new_session and self.config.auto_start:
            self._send_event(PRESENCE_JOIN, now, kind="join")
        if was_reconnect:
            self._echo_wanted = True  # confirm the new link and refresh the expiry
        if not resp.new_session and (was_reconnect or self._resume_from_checkpoint):
            self._start_backfill(now)
        else:
            # A brand-new session cannot hold the message that was in flight: send it again.
            self._resend_in_flight()

    def _on_structured(self, frame: ServerFrame, msg: StructuredMessage, now: float) -> None:
        tracing_id = frame.tracing_id
        if (tracing_id is not None and (tracing_id in self._echo_ids or tracing_id == HEALTH_CHECK_ID)) or (
            msg.meta("customMessageId") == HEALTH_CHECK_ID
        ):
            self._on_echo_reply(tracing_id, msg, now)  # a health check, never chat
        elif msg.direction == "Inbound":
            self._on_own_message(tracing_id, msg)
        elif msg.direction == "Outbound":
            self._admit(msg, now)

    def _on_echo_reply(self, tracing_id: str | None, msg: StructuredMessage, now: float) -> None:
        self._answered(tracing_id, "echo")
        expiration, duration = msg.meta("expirationDate"), msg.meta("durationSeconds")
        try:
            self._set_expiry(float(expiration) if expiration else None, float(duration) if duration else None, now)
        except ValueError:
            self._events.append(ProtocolError(reason="echo reply metadata is not numeric"))

    def _on_own_message(self, tracing_id: str | None, msg: StructuredMessage) -> None:
        """The Inbound echo of something we sent."""
        if tracing_id is None or self._take_pending(tracing_id, "join", "clear") is not None:
            return
        item = self._outbox.confirm(tracing_id)
        if item is None:
            return  # a duplicate echo, or a message sent from another connection
        self._confirmed(item, msg)

    def _confirmed(self, item: OutboxItem, msg: StructuredMessage) -> None:
        if self._outbox.in_flight is None:
            self._in_flight_deadline = None
        key = msg.dedup_key
        if key is not None:
            self._own_ids.add(key)
        when = parse_time(msg.time)
        if when is not None and (self._last_own_time is None or when > self._last_own_time):
            self._last_own_time = when
        self._events.append(GuestMessageConfirmed(tracing_id=item.tracing_id, message_id=key))

    def _admit(self, msg: StructuredMessage, now: float) -> None:
        """An agent/bot message or event: typing goes out at once, the rest through dedup+reorder."""
        if msg.type == "Receipt":
            return
        if msg.type == "Event" and msg.events and all(ev.typing is not None for ev in msg.events):
            for ev in msg.events:
                if ev.typing is not None and ev.typing.type == "On":
                    self._events.append(AgentTyping(duration_ms=ev.typing.duration))
            return
        key = msg.dedup_key
        if key is not None and not self._seen.add(key):
            return
        when = parse_time(msg.time)
        self._buffer.push(when.timestamp() if when else now, msg, now)

    def _release(self, msg: StructuredMessage) -> None:
        when = parse_time(msg.time)
        if when is not None and (self._watermark is None or when > self._watermark):
            self._watermark = when
        if msg.type in ("Text", "Structured") and (msg.text or msg.content):
            self._events.append(
                AgentMessage(
                    message_id=msg.dedup_key,
                    text=msg.text or "",
                    time=when,
                    originating_entity=msg.originating_entity,
                )
            )
        disconnect = any(ev.presence is not None and ev.presence.type == "Disconnect" for ev in msg.events)
        if disconnect or (msg.read_only and self.state is WmState.CONFIGURED):
            self._events.append(ConversationDisconnected(read_only=msg.read_only))
        if msg.read_only:
            self._become_read_only()

    def _on_error(
        self, now: float, code: int, reason: str, tracing_id: str | None, retry_after: float | None = None
    ) -> None:
        if code in (4006, 4007):
            self._expire(code)
            return
        kind = self._blame(tracing_id, code, now)
        if code in (429, 4029):
            delay = retry_after if retry_after and retry_after > 0 else self.config.backoff.initial
            self._events.append(RateLimited(retry_after=delay))
            self._outbox.hold(now + delay)
            if kind == "message":
                self._outbox.requeue()
                self._in_flight_deadline = None
            elif kind == "configure":
                self._configure_at = now + delay
            elif kind in ("clear", "close", "jwt"):
                # Retry-by-timeout: when this expires, the usual timeout path moves things on.
                self._pending[self._new_id()] = _Pending(kind, now + delay)
            return
        if kind == "configure":
            if code in _RETRYABLE_CONFIGURE_CODES:
                self._force_reconnect(now, f"configureSession failed ({code})")
            else:
                self._terminate(ConnectionClosed(reason=f"configureSession refused ({code}): {reason}"))
        elif kind == "message":
            item = self._outbox.fail()
            self._in_flight_deadline = None
            if item is not None:
                self._reject(item, code, reason)
            if code == 409:
                self._become_read_only()
        elif kind == "clear":
            self._send_close(now)  # Clear not enabled (403) or refused: still close our session
        elif kind == "close":
            self._terminate(ConnectionClosed(reason="closed by guest", by_guest=True))
        elif kind == "jwt":
            self._backfill_failed(now, f"getJwt refused: {reason}", code, retry_after,
                                  may_pass=retryable(code))
        else:
            if code == 409:
                self._become_read_only()
            self._events.append(ProtocolError(reason=reason, code=code))

    def _blame(self, tracing_id: str | None, code: int, now: float) -> str:
        """Which request an error frame answers: by tracingId when present, else by elimination."""
        if tracing_id is not None:
            pending = self._pending.pop(tracing_id, None)
            if pending is not None:
                return pending.kind
            in_flight = self._outbox.in_flight
            return "message" if in_flight is not None and in_flight.tracing_id == tracing_id else "other"
        for kind in ("configure", "join", "clear", "close"):
            if (pending := self._take_pending(None, kind)) is not None:
                return pending.kind
        if self._outbox.in_flight is not None and (
            code in _MESSAGE_ERROR_CODES
            or self._last_typing_at is None
            or now - self._last_typing_at > _TYPING_BLAME_WINDOW
        ):
            return "message"
        return "other"

    def _on_timeout(self, kind: str, now: float) -> None:
        if kind == "configure":
            self._force_reconnect(now, "configureSession not answered")
        elif kind == "echo":
            self._force_reconnect(now, "echo not answered")
        elif kind == "jwt":
            self._events.append(ProtocolError(reason="getJwt not answered"))
            self._finish_backfill(now)
        elif kind == "clear":
            self._send_close(now)
        elif kind == "close":
            self._terminate(ConnectionClosed(reason="closed by guest", by_guest=True))
        # join: no echo is fine; the outbox just stops waiting for it

    # --- history backfill -------------------------------------------------------------------

    def _start_backfill(self, now: float) -> None:
        floors = [t for t in (self._watermark, self._last_own_time) if t is not None]
        not_before = min(floors) - timedelta(seconds=self.config.history_grace) if floors else None
        self._backfill = _Backfill(not_before=not_before, deadline=now + self.config.request_timeout)
        self._read_history(now)

    def _read_history(self, now: float) -> None:
        """Ask for the backfill's page, minting a JWT first unless the last one has life left."""
        if self._jwt is not None and self._jwt_exp > now + 5:
            self._request_history_page(now)
        else:
            self._send_request("jwt", now, lambda tid: GetJwtRequest(token=self._token, tracing_id=tid).to_text())

    def _backfill_failed(self, now: float, reason: str, code: int | None, retry_after: float | None, *,
                         may_pass: bool) -> None:
        """A history read (or the JWT it needs) failed. What Genesys sent while no socket was open is only
        in history, so a failure that may pass (no answer, 429, 5xx, an expired JWT) is asked again after
        a backoff, up to HISTORY_RETRIES times (chaos finding: one 503 lost the agent's messages of an
        adopted session); then the backfill ends with what it has and the gap is reported."""
        backfill = self._backfill
        if backfill is None:
            return
        if may_pass and backfill.retries < HISTORY_RETRIES:
            backfill.retries += 1
            delay = max(retry_after or 0.0, self.config.backoff.delay(backfill.retries, self._rng))
            backfill.request_id, backfill.retry_at = None, now + delay
            backfill.deadline = backfill.retry_at + self.config.request_timeout
            return
        self._events.append(ProtocolError(reason=reason, code=code))
        self._finish_backfill(now)

    def _backfill_deadline(self) -> float:
        backfill = self._backfill
        assert backfill is not None
        return backfill.retry_at if backfill.retry_at is not None else backfill.deadline

    def _request_history_page(self, now: float) -> None:
        backfill = self._backfill
        if backfill is None or self._jwt is None:
            return
        backfill.request_id = self._new_id()
        backfill.deadline = now + self.config.request_timeout
        self._intents.append(
            FetchMessageHistory(
                request_id=backfill.request_id,
                page_number=backfill.page,
                page_size=self.config.history_page_size,
                jwt=self._jwt,
                origin=self.config.origin,
            )
        )

    def _finish_backfill(self, now: float) -> None:
        backfill, self._backfill = self._backfill, None
        if backfill is None:
            return
        for msg in missed_outbound(backfill.entities, self._seen, backfill.not_before):
            self._admit(msg, now)
        item = self._outbox.in_flight
        if item is None:
            return
        found = self._find_in_history(item, backfill.entities)
        if found is not None:
            self._outbox.confirm(item.tracing_id)
            self._confirmed(item, found)
        else:
            # Not in history (or history unavailable): send again. If history was unavailable this
            # can double a message whose echo was lost with the socket; losing it would be worse.
            self._resend_in_flight()

    def _find_in_history(self, item: OutboxItem, entities: list[StructuredMessage]) -> StructuredMessage | None:
        """Our in-flight message in history (:mod:`guest.ownmessage`): not older than the last confirmed
        one, and not one already confirmed."""
        sought = OwnMessage(item.text, self._last_own_time, self._own_ids)
        return sought.find((e, e.dedup_key, e.text, e.time) for e in entities if e.direction == "Inbound")

    # --- sending ----------------------------------------------------------------------------

    def _pump(self, now: float) -> None:
        """Do whatever has become possible: release agent messages, send the next guest message,
        health-check, progress an end."""
        if self.state in _TERMINAL:
            return
        self._outbox.expire_hold(now)
        if self._backfill is None:
            for msg in self._buffer.pop_ready(now):
                self._release(msg)
        self._send_next_message(now)
        self._maybe_echo(now)
        self._maybe_close(now)

    def _can_send(self) -> bool:
        return self._connected and self._backfill is None and not self._has_pending("configure", "join")

    def _send_next_message(self, now: float) -> None:
        if self.state is not WmState.CONFIGURED or not self._can_send() or not self._outbox.ready(now):
            return
        item = self._outbox.take(now)
        if self.config.message_interval:
            self._outbox.hold(now + self.config.message_interval)  # the next one waits its turn
        if item.attempts == 1 and self._custom_attributes:
            item.extras, self._custom_attributes = self._fitting_attributes(), {}
        self._frames.append(
            SendMessageRequest(
                token=self._token,
                tracing_id=item.tracing_id,
                time=iso_time(now),
                message=IncomingNormalizedMessage(type="Text", text=item.text),
                channel=self._channel(item.extras),
            ).to_text()
        )
        self._in_flight_deadline = now + self.config.confirm_timeout

    def _send_event(self, event: OutgoingEvent, now: float, *, kind: str | None = None) -> None:
        tracing_id = self._new_id()
        extras: dict[str, str] = {}
        if event is PRESENCE_JOIN and self._custom_attributes:
            extras, self._custom_attributes = self._fitting_attributes(), {}
        if kind is not None:
            settle = self.config.join_settle if kind == "join" else self.config.request_timeout
            self._pending[tracing_id] = _Pending(kind, now + settle)
        self._frames.append(
            SendMessageRequest(
                token=self._token,
                tracing_id=tracing_id,
                time=iso_time(now),
                message=IncomingNormalizedMessage(type="Event", events=[event]),
                channel=self._channel(extras),
            ).to_text()
        )

    def _fitting_attributes(self) -> dict[str, str]:
        attributes = self._custom_attributes
        if _json_bytes(attributes) > self._max_custom_bytes:
            # Sending them would get the message refused (4013); the message matters more.
            self._events.append(
                ProtocolError(reason=f"custom attributes exceed {self._max_custom_bytes} bytes; not sent", code=4013)
            )
            return {}
        return attributes

    @staticmethod
    def _channel(attributes: dict[str, str]) -> OutgoingChannel | None:
        return OutgoingChannel(metadata=ChannelMetadata(custom_attributes=attributes)) if attributes else None

    def _send_request(self, kind: str, now: float, build: Callable[[str], str]) -> None:
        """Send a request frame built around a fresh tracingId and await its answer."""
        tracing_id = self._new_id()
        timeout = self.config.echo_timeout if kind == "echo" else self.config.request_timeout
        self._pending[tracing_id] = _Pending(kind, now + timeout)
        self._frames.append(build(tracing_id))

    def _send_configure(self, now: float) -> None:
        self.state = WmState.CONFIGURING
        self._send_request(
            "configure",
            now,
            lambda tid: ConfigureSessionRequest(
                token=self._token, deployment_id=self.config.deployment_id, tracing_id=tid
            ).to_text(),
        )

    def _send_close(self, now: float) -> None:
        self.state = WmState.CLOSING
        self._send_request("close", now, lambda tid: CloseSessionRequest(token=self._token, tracing_id=tid).to_text())

    def _echo_due_at(self) -> float | None:
        """When an echo should go; None while one cannot go at all (so no deadline is reported
        that ``timer`` could not act on)."""
        if not self._connected or self.state not in _OPEN or self._backfill is not None:
            return None
        if self._has_pending("echo", "configure"):
            return None
        if self._echo_wanted:
            return self._echo.next_allowed()
        if self._expires_at is not None and self._expiry_echo_for != self._expires_at:
            return max(self._expires_at - self.config.expiry_margin, self._echo.next_allowed())
        return None

    def _maybe_echo(self, now: float) -> None:
        due_at = self._echo_due_at()
        if due_at is None or now < due_at or not self._echo.take(now):
            return
        if not self._echo_wanted:
            self._expiry_echo_for = self._expires_at  # one near-expiry check per reported expiry
        self._echo_wanted = False

        def build(tid: str) -> str:
            self._echo_ids.add(tid)
            return SendEchoRequest(token=self._token, tracing_id=tid).to_text()

        self._send_request("echo", now, build)

    def _maybe_close(self, now: float) -> None:
        if not self._end_requested or self.state not in _OPEN or not self._can_send() or len(self._outbox):
            return
        if self.state is WmState.CONFIGURED and self.config.clear_on_end:
            self.state = WmState.CLOSING
            self._send_event(PRESENCE_CLEAR, now, kind="clear")
        else:
            self._send_close(now)

    # --- state changes ----------------------------------------------------------------------

    def _set_expiry(self, expiration: float | None, duration: float | None, now: float) -> None:
        if expiration:
            self._expires_at = expiration
        elif duration:
            self._expires_at = now + duration

    def _become_read_only(self) -> None:
        if self.state is WmState.CONFIGURED:
            self.state = WmState.READ_ONLY
        self._reject_queued(409, "session is read-only")

    def _drop_connection(self) -> None:
        """Forget everything tied to the socket. The in-flight message stays in flight: whether it
        arrived is settled by history after the next configureSession."""
        self._connected = False
        self._frames.clear()
        self._pending.clear()
        self._configure_at = None
        self._in_flight_deadline = None
        self._backfill = None

    def _schedule_reconnect(self, now: float) -> None:
        event = self._reconnect.lost(now)
        if event is None:
            self._terminate(ConnectionClosed(reason="reconnect timed out"))
            return
        self.state = WmState.RECONNECTING
        self._events.append(event)

    def _force_reconnect(self, now: float, reason: str) -> None:
        self._intents.append(CloseSocket(code=1000, reason=reason))
        self._drop_connection()
        self._schedule_reconnect(now)

    def _expire(self, code: int | None) -> None:
        self._finish(WmState.EXPIRED, SessionExpired(code=code), "session expired", code)

    def _terminate(self, event: ConnectionClosed) -> None:
        self._finish(WmState.CLOSED, event, event.reason, None)

    def _finish(self, state: WmState, event: GuestEvent, reason: str, code: int | None) -> None:
        # Agent messages already admitted are released, not lost, before the final event.
        for msg in self._buffer.pop_all():
            self._release(msg)
        had_socket = self._connected or self.state is WmState.CONNECTING
        self.state = state
        self._events.append(event)
        in_flight = self._outbox.in_flight
        for item in self._outbox.drain():
            maybe = item is in_flight or item.uncertain
            self._reject(item, code, reason, maybe=maybe)
        self._drop_connection()
        self._reconnect.cancel()
        if had_socket:
            self._intents.append(CloseSocket(code=1000, reason=reason))

    def _reject_queued(self, code: int, reason: str) -> None:
        for item in self._outbox.drain_queued():
            self._reject(item, code, reason)

    def _resend_in_flight(self) -> None:
        """The in-flight message did not arrive (as far as we can tell): send it again, unless the
        session has become read-only, where a resend can only be refused."""
        if self.state is WmState.READ_ONLY:
            item = self._outbox.fail()
            if item is not None:
                self._reject(item, 409, "session is read-only", maybe=True)
        else:
            self._outbox.requeue(uncertain=True)

    # --- pending requests -------------------------------------------------------------------

    def _has_pending(self, *kinds: str) -> bool:
        return any(p.kind in kinds for p in self._pending.values())

    def _take_pending(self, tracing_id: str | None, *kinds: str) -> _Pending | None:
        """Pop the pending request ``tracing_id`` if it is of ``kinds``; without a tracingId, the
        oldest pending request of those kinds (servers do not always echo tracingId on errors)."""
        if tracing_id is not None:
            pending = self._pending.get(tracing_id)
            if pending is not None and pending.kind in kinds:
                return self._pending.pop(tracing_id)
            return None
        for key, pending in self._pending.items():
            if pending.kind in kinds:
                return self._pending.pop(key)
        return None

    def _answered(self, tracing_id: str | None, *kinds: str) -> _Pending | None:
        """A success answer settles the request it names, or else the oldest of its kind: a stray
        tracingId must not leave the real request behind to time out later."""
        return self._take_pending(tracing_id, *kinds) or self._take_pending(None, *kinds)
