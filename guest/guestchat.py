"""Sans-I/O state machine for one legacy Guest Chat (ACD Web Chat v2) session.

Guest Chat talks REST for everything the guest does and listens on a server-push event stream.
The machine makes no calls: it emits intents (REST requests, open/close the stream) and consumes
their results. The I/O layer:

    session.start(now)                              -> CreateConversation
    session.resume(created_answer, now)             -> OpenSocket (same conversation, then a backfill)
    session.rest_succeeded(request_id, now, text)   -> e.g. OpenSocket(eventStreamUri)
    session.rest_failed(request_id, now, error)
    session.connection_made(now) / connection_lost(now)
    session.receive_text(frame, now)                -> events
    session.send_text(text, now) / send_typing(now) / end(now)
    session.timer(now) at next_deadline()

then drains ``intents_to_run()`` (carry each out and report back by ``request_id``) and
``events_received()``. ``now`` is POSIX seconds. A REST intent names its :mod:`genesys.operations`
operation; the machine reads the answer's text as that operation's :mod:`genesys.models` model.

Rules this machine enforces (see reference/genesys-websockets.md, Protocol A):
- The conversation is not routed until the stream is attached, so guest messages wait for the
  guest member to read CONNECTED on the stream; a 400 ``chat.error.conversation.state`` means "not
  yet" and is retried, not failed.
- A silent stream (no frame for ``heartbeat_timeout``; heartbeats come every ~30 s) is dead: reopen
  the same eventStreamUri while the JWT is valid, then backfill with ``FetchHistory(after=last id)``.
- Agent messages are deduplicated by id and released in timestamp order.
- Agent DISCONNECTED while the guest stays CONNECTED is a transfer (``AgentLeft``), not the end.
- Who a member is (an agent? its name) is never read from the stream, which names members by id
  alone: the machine fetches the member (``FetchMember``) the first time it connects or joins.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from genesys import operations
from genesys.errors import GenesysError, GenesysTransportError
from genesys.models import (
    CreateWebChatConversationRequest,
    CreateWebChatConversationResponse,
    GuestMemberInfo,
    WebChatMemberInfo,
    WebChatMessage,
    WebChatMessageEntityList,
    WebChatRoutingTarget,
)
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
    jwt_expiry,
    parse_time,
    retryable,
)
from guest.events import (
    AgentJoined,
    AgentLeft,
    AgentMessage,
    AgentTyping,
    CloseSocket,
    Ended,
    GenesysCall,
    GuestMessageConfirmed,
    OpenSocket,
    ProtocolError,
    RateLimited,
    SessionStarted,
    UnknownFrame,
)
from guest.guestchat_frames import (
    Heartbeat,
    MemberChange,
    SocketClosing,
    StreamFrameError,
    StreamMember,
    StreamMessage,
    StreamTyping,
    UnknownStreamFrame,
    parse_stream_frame,
)
from guest.ownmessage import OwnMessage

ChatLine = StreamMessage | WebChatMessage
"""A chat line from the stream (members by id) or from a REST answer (history, our own send)."""
# "Not active yet" answers: the conversation is still being routed, so try the message again later.
_NOT_YET = frozenset({"chat.error.conversation.state", "chat.error.member.state"})


class GcState(StrEnum):
    NEW = "new"
    CREATING = "creating"  # CreateConversation asked
    CONNECTING = "connecting"  # OpenSocket(eventStreamUri) asked
    ACTIVE = "active"  # stream attached
    RECONNECTING = "reconnecting"  # stream lost; waiting out the backoff delay
    ENDED = "ended"


class GuestChatConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    organization_id: str = Field(min_length=1)
    deployment_id: str = Field(min_length=1)
    queue_name: str = Field(min_length=1, description="routingTarget.targetAddress: the queue NAME.")
    display_name: str = Field(min_length=1)
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone_number: str | None = None
    custom_fields: dict[str, str] = Field(default_factory=dict, repr=False)
    skills: list[str] | None = None
    language: str | None = None
    priority: int | None = None

    reorder_window: float = Field(default=1.0, ge=0)
    dedup_capacity: int = Field(default=1024, ge=16)
    typing_interval: float = Field(default=5.0, ge=0)
    heartbeat_timeout: float = Field(default=60.0, gt=0, description="Heartbeats come every ~30 s.")
    connect_grace: float = Field(
        default=10.0, ge=0, description="Send anyway if the guest's CONNECTED has not shown by then."
    )
    not_active_timeout: float = Field(
        default=120.0,
        gt=0,
        description="Give up on a message still not posted this long after its first try.",
    )
    unknown_settle: float = Field(
        default=3.0, ge=0, description="After an unknown send outcome, wait this long for its echo."
    )
    request_timeout: float = Field(default=15.0, gt=0)
    reconnect_timeout: float = Field(default=300.0, gt=0)
    backoff: Backoff = Backoff()
    max_body_chars: int = Field(default=4000, gt=0)
    history_max_results: int = Field(default=100, ge=1, le=100)

    def create_request(self) -> CreateWebChatConversationRequest:
        return CreateWebChatConversationRequest(
            organization_id=self.organization_id,
            deployment_id=self.deployment_id,
            routing_target=WebChatRoutingTarget(
                target_address=self.queue_name,
                skills=self.skills,
                language=self.language,
                priority=self.priority,
            ),
            member_info=GuestMemberInfo(
                display_name=self.display_name,
                first_name=self.first_name,
                last_name=self.last_name,
                email=self.email,
                phone_number=self.phone_number,
                custom_fields=self.custom_fields or None,
            ),
        )


# --- Intents ------------------------------------------------------------------------------------


class ChatRequest(GenesysCall):
    """A Guest Chat REST call (:class:`~guest.events.GenesysCall`); the guest JWT rides on every call
    but the create."""

    jwt: SecretStr | None = None


class CreateConversation(ChatRequest):
    body: CreateWebChatConversationRequest

    @property
    def operation(self) -> Operation[Any]:
        return operations.create_guest_chat(self.body)


class _MemberRequest(ChatRequest):
    conversation_id: str
    member_id: str
    jwt: SecretStr


class SendMessage(_MemberRequest):
    text: str = Field(repr=False)
    tracing_id: str

    @property
    def operation(self) -> Operation[Any]:
        return operations.send_guest_chat_message(
            self.conversation_id, self.member_id, self.text, jwt=self.jwt.get_secret_value()
        )


class SendTyping(_MemberRequest):
    @property
    def operation(self) -> Operation[Any]:
        return operations.send_guest_chat_typing(self.conversation_id, self.member_id, jwt=self.jwt.get_secret_value())


class FetchMember(_MemberRequest):
    """Who ``member_id`` is (role, name): the stream only ever names it."""

    @property
    def operation(self) -> Operation[Any]:
        return operations.get_guest_chat_member(self.conversation_id, self.member_id, jwt=self.jwt.get_secret_value())


class LeaveConversation(_MemberRequest):
    """DELETE the guest member: the guest-side end of the chat (204)."""

    @property
    def operation(self) -> Operation[Any]:
        return operations.leave_guest_chat(self.conversation_id, self.member_id, jwt=self.jwt.get_secret_value())


class FetchHistory(ChatRequest):
    conversation_id: str
    jwt: SecretStr
    after: str | None = None  # a message id
    max_results: int = 100

    @property
    def operation(self) -> Operation[Any]:
        return operations.get_guest_chat_messages(
            self.conversation_id,
            jwt=self.jwt.get_secret_value(),
            after=self.after or None,
            sort_order="ascending",
            max_results=self.max_results,
        )


class IncompleteAnswer(ValueError):
    """A create answer without its conversation id, JWT, event stream or guest member id."""


# --- The machine --------------------------------------------------------------------------------


@dataclass
class _Member:
    role: str | None = None
    state: str | None = None
    display_name: str | None = None
    announced: bool = False  # AgentJoined emitted for the current connection
    fetching: bool = False


class GuestChatSession(SansIOMachine):
    """One Guest Chat conversation from the guest's side. See the module docstring for the API."""

    def __init__(
        self,
        config: GuestChatConfig,
        *,
        rng: random.Random | None = None,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        super().__init__(rng=rng, new_id=new_id)
        self.config = config
        self.state = GcState.NEW
        self._requests: dict[str, ChatRequest] = {}

        self.conversation_id: str | None = None
        self.member_id: str | None = None  # the guest's member id
        self._jwt: SecretStr | None = None
        self._jwt_exp: float | None = None
        self._stream_uri: SecretStr | None = None

        self._connected = False
        self._attached_once = False
        self._last_frame_at = 0.0
        self._grace_until: float | None = None
        self._guest_connected = False
        self._reconnect = Reconnector(config.backoff, config.reconnect_timeout, self._rng)
        self._create_attempt = 0
        self._create_started: float | None = None
        self._create_at: float | None = None
        self._leave_requested = False
        self._leave_at: float | None = None
        self._leave_attempt = 0

        self._members: dict[str, _Member] = {}
        self._seen = RecentIds(config.dedup_capacity)
        self._buffer: ReorderBuffer[ChatLine] = ReorderBuffer(config.reorder_window)
        self._last_seen: tuple[float, str] | None = None  # (timestamp, id) of the newest message
        self._history: str | None = None  # request id of the backfill in progress
        self._history_deadline: float | None = None
        # A backfill answered 5xx/429 (or lost) is asked again: what the stream missed is only there.
        self._history_retry: tuple[float, str | None] | None = None  # (when, after)
        self._history_attempt = 0

        self._outbox = Outbox()
        self._typing = Throttle(config.typing_interval)
        self._typing_in_flight = False

    # --- outputs ----------------------------------------------------------------------------

    @property
    def backfilling(self) -> bool:
        """A history backfill is under way: a page asked, or a failed page to ask again after a backoff."""
        return self._history is not None or self._history_retry is not None

    def next_deadline(self) -> float | None:
        """When ``timer`` must be called next; None when nothing is scheduled."""
        if self.state is GcState.ENDED:
            return None
        times = [self._reconnect.reconnect_at, self._create_at, self._leave_at, self._history_deadline,
                 self._history_retry[0] if self._history_retry else None]
        times += [self._buffer.next_deadline() if self._history is None else None, self._outbox.hold_ends]
        if self._connected:
            times.append(self._last_frame_at + self.config.heartbeat_timeout)
        if len(self._outbox) and self._outbox.in_flight is None:
            if self.state is GcState.ACTIVE and not self._guest_connected:
                times.append(self._grace_until)
            item = self._outbox.head()
            if item is not None and item.first_sent_at is not None:
                times.append(item.first_sent_at + self.config.not_active_timeout)
        return earliest(times)

    # --- inputs: commands -------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Create the conversation; idempotent."""
        if self.state is not GcState.NEW:
            return
        self.state = GcState.CREATING
        self._create_started = now
        self._request(CreateConversation(request_id=self._new_id(), body=self.config.create_request()))

    def resume(self, created: str | bytes, now: float) -> None:
        """Carry on a conversation created before (by another worker, say) from its saved create answer:
        no second conversation. The event stream is attached again at once and, as after a lost stream,
        history is backfilled, since anything may have happened meanwhile. An answer that no longer
        parses cannot be resumed: a new conversation is created instead."""
        if self.state is not GcState.NEW:
            return
        try:
            self._take_created(CreateWebChatConversationResponse.model_validate_json(created))
        except ValueError:  # not JSON, not the model, or incomplete
            self._events.append(ProtocolError(reason="saved conversation did not parse; creating a new one"))
            self.start(now)
            return
        self._attached_once = True  # the attach backfills
        # The guest's CONNECTED may have gone by before: send after the grace even if it never shows.
        self._grace_until = now + self.config.connect_grace
        self._events.append(SessionStarted(new_session=False, conversation_id=self.conversation_id))
        if self._jwt_exp is not None and now >= self._jwt_exp:
            self._end("system", "guest chat JWT expired")
            return
        self._open_stream()

    def send_text(self, text: str, now: float) -> str:
        """Queue a guest message; returns its tracing id (confirmation and rejection carry it)."""
        tracing_id = self._new_id()
        if self.state is GcState.ENDED or self._leave_requested:
            self._reject(tracing_id, None, "chat has ended")
        elif not text.strip():
            self._reject(tracing_id, None, "message is empty")
        elif len(text) > self.config.max_body_chars:
            limit = self.config.max_body_chars
            self._reject(tracing_id, None, f"message is {len(text)} characters; the limit is {limit}")
        else:
            self._outbox.add(OutboxItem(tracing_id, text, now))
            self._pump(now)
        return tracing_id

    def send_typing(self, now: float) -> bool:
        """POST typing unless throttled or the chat is not live yet; True when asked."""
        if (
            self.state is not GcState.ACTIVE
            or not self._guest_connected
            or self._leave_requested
            or self._typing_in_flight
            or not self._typing.take(now)
        ):
            return False
        self._typing_in_flight = True
        self._request(SendTyping(request_id=self._new_id(), **self._member_args()))
        return True

    def end(self, now: float) -> None:
        """Leave (DELETE the guest member) once the queued messages are out."""
        if self.state is GcState.ENDED:
            return
        self._leave_requested = True
        if self.state is GcState.NEW:
            self._end("guest", "ended before start")
            return
        self._pump(now)

    # --- inputs: I/O ------------------------------------------------------------------------

    def connection_made(self, now: float) -> None:
        if self.state is not GcState.CONNECTING:
            self._intents.append(CloseSocket(reason="not expected"))
            return
        self._connected = True
        self.state = GcState.ACTIVE
        self._last_frame_at = now
        self._reconnect.recovered()
        if not self._attached_once:
            self._attached_once = True
            self._grace_until = now + self.config.connect_grace
        else:
            self._request_history(now, after=self._last_seen[1] if self._last_seen else None)
        self._pump(now)

    def connection_lost(self, now: float) -> None:
        if self.state is GcState.ENDED or (not self._connected and self.state is not GcState.CONNECTING):
            return
        self._connected = False
        self._schedule_reconnect(now)

    def receive_text(self, data: str | bytes, now: float) -> None:
        if self.state is GcState.ENDED:
            return
        self._last_frame_at = now  # any frame proves the socket alive, not only heartbeats
        try:
            frame = parse_stream_frame(data)
        except StreamFrameError as exc:
            self._events.append(ProtocolError(reason=str(exc)))
            self._pump(now)
            return
        if frame.conversation_id is not None and frame.conversation_id != self.conversation_id:
            return  # not our conversation (a shared socket would do this); nothing to relay
        match frame.body:
            case Heartbeat():
                pass
            case SocketClosing():
                self._force_reconnect(now, "server closing the socket", immediate=True)
            case MemberChange(member=member):
                self._on_member(member)
            case StreamMessage() as message:
                self._admit(message, now)
            case StreamTyping(sender=sender):
                if sender.id != self.member_id:
                    self._events.append(AgentTyping(sender_id=sender.id))
            case UnknownStreamFrame():
                self._events.append(UnknownFrame(kind=frame.topic))
        self._pump(now)

    def rest_succeeded(self, request_id: str, now: float, body: str | bytes | None = None) -> None:
        """``body``: the answer's text (None for 204), read as the request's operation's model."""
        request = self._requests.pop(request_id, None)
        if request is None:
            return
        try:
            self._on_success(request, body, now)
        except ValueError:  # not JSON, not the model (pydantic's ValidationError), or incomplete
            self._events.append(ProtocolError(reason=f"{type(request).__name__} answer did not parse"))
            self._on_failure(request, None, None, None, now)
        self._pump(now)

    def rest_failed(self, request_id: str, now: float, error: GenesysError | GenesysTransportError) -> None:
        request = self._requests.pop(request_id, None)
        if request is None:
            return
        if isinstance(error, GenesysError):
            self._on_failure(request, error.status, error.code, error.retry_after_s, now)
        else:
            self._on_failure(request, None, None, None, now)  # outcome unknown
        self._pump(now)

    def timer(self, now: float) -> None:
        if self.state is GcState.ENDED:
            return
        if self.state is GcState.RECONNECTING and self._reconnect.due(now):
            self._open_stream()
        if self._create_at is not None and now >= self._create_at:
            self._create_at = None
            self._request(CreateConversation(request_id=self._new_id(), body=self.config.create_request()))
        if self._leave_at is not None and now >= self._leave_at:
            self._leave_at = None
            self._request(LeaveConversation(request_id=self._new_id(), **self._member_args()))
        if self._connected and now - self._last_frame_at >= self.config.heartbeat_timeout:
            self._force_reconnect(now, "no heartbeat")
        if self._history_retry is not None and now >= self._history_retry[0]:
            after, self._history_retry = self._history_retry[1], None
            self._request_history(now, after, retry=True)
        if self._history_deadline is not None and now >= self._history_deadline:
            self._events.append(ProtocolError(reason="history backfill timed out"))
            self._history = self._history_deadline = None
        self._pump(now)

    # --- REST outcomes ----------------------------------------------------------------------

    def _on_success(self, request: ChatRequest, body: str | bytes | None, now: float) -> None:
        match request:
            case CreateConversation():
                self._take_created(CreateWebChatConversationResponse.model_validate_json(body or b""))
                self._events.append(SessionStarted(new_session=True, conversation_id=self.conversation_id))
                self._open_stream()
            case SendMessage():
                message = WebChatMessage.model_validate_json(body or b"")
                if message.id is not None:
                    self._seen.add(message.id)  # its stream echo is not an agent message
                    self._note_seen(message)
                if self._outbox.confirm(request.tracing_id) is not None:
                    self._events.append(GuestMessageConfirmed(tracing_id=request.tracing_id, message_id=message.id))
            case SendTyping():
                self._typing_in_flight = False
            case FetchMember():
                self._learn(request.member_id, WebChatMemberInfo.model_validate_json(body or b""))
            case FetchHistory():
                page = WebChatMessageEntityList.model_validate_json(body or b"")
                for message in page.entities:
                    self._admit(message, now)
                last_id = next((m.id for m in reversed(page.entities) if m.id), None)
                if len(page.entities) >= request.max_results and last_id is not None:
                    self._request_history(now, after=last_id)  # there may be more
                else:
                    self._history = self._history_deadline = None
            case LeaveConversation():
                self._end("guest", "guest left")

    def _take_created(self, created: CreateWebChatConversationResponse) -> None:
        member_id = created.member.id if created.member is not None else None
        if not (created.id and member_id and created.jwt and created.event_stream_uri):
            raise IncompleteAnswer("create answer without id, member id, jwt or eventStreamUri")
        self.conversation_id, self.member_id = created.id, member_id
        self._jwt, self._stream_uri = SecretStr(created.jwt), SecretStr(created.event_stream_uri)
        self._jwt_exp = jwt_expiry(created.jwt)

    def _on_failure(
        self,
        request: ChatRequest,
        status: int | None,
        code: str | None,
        retry_after: float | None,
        now: float,
    ) -> None:
        may_pass = retryable(status)
        match request:
            case CreateConversation():
                started = self._create_started if self._create_started is not None else now
                if may_pass and now - started < self.config.reconnect_timeout:
                    # Creating twice is harmless: an unattached conversation is never routed.
                    self._create_attempt += 1
                    self._create_at = now + max(retry_after or 0, self._delay(self._create_attempt))
                else:
                    self._end("system", f"conversation not created ({status} {code or ''})".strip())
            case SendMessage():
                self._on_send_failed(request, status, code, retry_after, now)
            case SendTyping():
                self._typing_in_flight = False
            case FetchMember():
                self._members.setdefault(request.member_id, _Member()).fetching = False
                self._events.append(ProtocolError(reason="member lookup failed", code=status))
            case FetchHistory():
                if may_pass and self._history_attempt < HISTORY_RETRIES:
                    # Still backfilling (live messages stay held): ask again after a backoff.
                    self._history_attempt += 1
                    delay = max(retry_after or 0, self._delay(self._history_attempt))
                    self._history_retry = (now + delay, request.after)
                    self._history_deadline = now + delay + self.config.request_timeout
                else:
                    self._events.append(ProtocolError(reason="history backfill failed", code=status))
                    self._history = self._history_deadline = None
            case LeaveConversation():
                if may_pass:
                    self._leave_attempt += 1
                    self._leave_at = now + max(retry_after or 0, self._delay(self._leave_attempt))
                elif status == 401:
                    self._end("system", "guest chat credentials expired")
                else:
                    self._end("guest", "guest left")  # 400 state / 404: the member is gone already

    def _on_send_failed(
        self,
        request: SendMessage,
        status: int | None,
        code: str | None,
        retry_after: float | None,
        now: float,
    ) -> None:
        item = self._outbox.find(request.tracing_id)
        if item is None or item is not self._outbox.in_flight:
            return
        if self.state is GcState.ENDED:
            self._reject(self._outbox.fail() or item, code or status, "chat has ended", maybe=status is None)
        elif status == 400 and code in _NOT_YET:
            self._outbox.requeue()
            self._outbox.hold(now + self._delay(item.attempts))
        elif status == 429:
            delay = retry_after or self._delay(item.attempts)
            self._events.append(RateLimited(retry_after=delay))
            self._outbox.requeue()
            self._outbox.hold(now + delay)
        elif status is None or status == 408 or status >= 500:
            # It may have been posted. Its echo on the stream settles that (see _release); send it
            # again only if no echo shows up while we wait.
            self._outbox.requeue(uncertain=True)
            self._outbox.hold(now + max(self.config.unknown_settle, self._delay(item.attempts)))
        else:
            self._outbox.fail()
            self._reject(item, code or status, f"message refused ({status})")
            if status == 401:
                self._end("system", "guest chat credentials expired")

    # --- stream content ---------------------------------------------------------------------

    def _on_member(self, info: StreamMember) -> None:
        if info.id == self.member_id:
            if info.state == "CONNECTED":
                self._guest_connected = True
            elif info.state == "DISCONNECTED":
                self._guest_gone()
            return
        member = self._members.setdefault(info.id, _Member())
        member.state = info.state or member.state
        if info.state == "CONNECTED":
            self._maybe_announce(info.id, member)
        elif info.state == "DISCONNECTED" and member.announced:
            member.announced = False
            self._events.append(AgentLeft(member_id=info.id))

    def _admit(self, message: ChatLine, now: float) -> None:
        if message.id is None or message.sender.id is None or not self._seen.add(message.id):
            return  # a line that names no id or sender (never seen from Genesys) cannot be placed
        self._note_seen(message)
        when = parse_time(message.timestamp)
        self._buffer.push(when.timestamp() if when else now, message, now)

    def _release(self, message: ChatLine) -> None:
        sender = message.sender.id or ""  # _admit let in only lines that name their sender
        if sender == self.member_id:
            if message.body_type == "member-leave":
                self._guest_gone()
            else:
                self._settle_uncertain(message)
            return
        member = self._members.setdefault(sender, _Member())
        if message.body_type == "member-join":
            self._maybe_announce(sender, member)
        elif message.body_type == "member-leave":
            if member.announced:
                member.announced = False
                self._events.append(AgentLeft(member_id=sender))
        elif message.body_type in ("standard", "notice") and message.body:
            self._events.append(
                AgentMessage(
                    message_id=message.id or "",
                    text=message.body,
                    time=parse_time(message.timestamp),
                    sender_id=sender,
                )
            )

    def _settle_uncertain(self, message: ChatLine) -> None:
        """Our own message on the stream (or in a backfill): if a send with an unknown outcome is waiting
        to be retried and this is it (:mod:`guest.ownmessage`), confirm instead of sending it twice."""
        head = self._outbox.head()
        if head is None or head is self._outbox.in_flight or not head.uncertain:
            return
        if not OwnMessage(head.text).matches(message.id, message.body, message.timestamp):
            return
        self._outbox.confirm(head.tracing_id)
        self._events.append(GuestMessageConfirmed(tracing_id=head.tracing_id, message_id=message.id))

    def _maybe_announce(self, member_id: str, member: _Member) -> None:
        if member.role == "AGENT":
            self._announce(member_id, member)
        elif member.role is None and not member.fetching and self.member_id is not None:
            member.fetching = True  # the stream does not always say who this is
            self._request(FetchMember(request_id=self._new_id(), **self._member_args(member_id)))

    def _announce(self, member_id: str, member: _Member) -> None:
        if not member.announced:
            member.announced = True
            self._events.append(AgentJoined(member_id=member_id, display_name=member.display_name))

    def _learn(self, member_id: str, info: WebChatMemberInfo) -> None:
        """What ``GET .../members/{member_id}`` said: announce the member if it is a connected agent."""
        member = self._members.setdefault(member_id, _Member())
        member.role = info.role or member.role
        member.state = info.state or member.state
        member.display_name = info.display_name or member.display_name
        member.fetching = False
        if member.role == "AGENT" and member.state == "CONNECTED":
            self._announce(member_id, member)

    def _guest_gone(self) -> None:
        # We only leave on request, so a guest that leaves unasked was ended from Genesys' side.
        self._end("guest" if self._leave_requested else "agent", "guest disconnected")

    def _note_seen(self, message: ChatLine) -> None:
        """Track the newest message id: the ``after`` cursor for a backfill."""
        when = parse_time(message.timestamp)
        if when is None or message.id is None:
            return
        key = (when.timestamp(), message.id)
        if self._last_seen is None or key >= self._last_seen:
            self._last_seen = key

    # --- sending ----------------------------------------------------------------------------

    def _pump(self, now: float) -> None:
        if self.state is GcState.ENDED:
            return
        self._outbox.expire_hold(now)
        if self._history is None:
            for message in self._buffer.pop_ready(now):
                self._release(message)
                if self.state is GcState.ENDED:
                    return
        self._expire_not_active(now)
        self._send_next(now)
        self._maybe_leave()

    def _may_send(self, now: float) -> bool:
        if self._grace_until is not None and now >= self._grace_until:
            # Genesys never said CONNECTED: try anyway; "not active yet" answers are retried.
            self._guest_connected, self._grace_until = True, None
        return self.state is GcState.ACTIVE and self._guest_connected

    def _send_next(self, now: float) -> None:
        if not self._may_send(now) or not self._outbox.ready(now):
            return
        item = self._outbox.take(now)
        self._request(
            SendMessage(request_id=self._new_id(), tracing_id=item.tracing_id, text=item.text, **self._member_args())
        )

    def _expire_not_active(self, now: float) -> None:
        item = self._outbox.head()
        if (
            item is not None
            and item is not self._outbox.in_flight
            and item.first_sent_at is not None
            and now - item.first_sent_at >= self.config.not_active_timeout
        ):
            self._outbox.confirm(item.tracing_id)  # take it off the queue
            waited = int(now - item.first_sent_at)
            self._reject(item, None, f"not delivered after retrying for {waited} s", maybe=item.uncertain)

    def _maybe_leave(self) -> None:
        if (
            self._leave_requested
            and self.member_id is not None
            and not len(self._outbox)
            and self._leave_at is None
            and not any(isinstance(r, LeaveConversation) for r in self._requests.values())
        ):
            self._request(LeaveConversation(request_id=self._new_id(), **self._member_args()))

    def _request(self, request: ChatRequest) -> None:
        self._requests[request.request_id] = request
        self._intents.append(request)

    def _member_args(self, member_id: str | None = None) -> dict[str, str | SecretStr]:
        assert self.conversation_id is not None and self.member_id is not None and self._jwt is not None
        return {
            "conversation_id": self.conversation_id,
            "member_id": member_id or self.member_id,
            "jwt": self._jwt,
        }

    def _request_history(self, now: float, after: str | None, *, retry: bool = False) -> None:
        assert self.conversation_id is not None and self._jwt is not None
        if not retry:
            self._history_attempt = 0
        request = FetchHistory(
            request_id=self._new_id(),
            conversation_id=self.conversation_id,
            jwt=self._jwt,
            after=after,
            max_results=self.config.history_max_results,
        )
        self._history, self._history_deadline = request.request_id, now + self.config.request_timeout
        self._request(request)

    # --- connection -------------------------------------------------------------------------

    def _open_stream(self) -> None:
        self.state = GcState.CONNECTING
        self._intents.append(OpenSocket(uri=self._stream_uri))

    def _force_reconnect(self, now: float, reason: str, *, immediate: bool = False) -> None:
        self._intents.append(CloseSocket(reason=reason))
        self._connected = False
        self._schedule_reconnect(now, immediate=immediate)

    def _schedule_reconnect(self, now: float, *, immediate: bool = False) -> None:
        if self._jwt_exp is not None and now >= self._jwt_exp:
            self._end("system", "guest chat JWT expired")
            return
        event = self._reconnect.lost(now, immediate=immediate)
        if event is None:
            self._end("system", "event stream reconnect timed out")
            return
        self.state = GcState.RECONNECTING
        self._events.append(event)

    def _delay(self, attempt: int) -> float:
        return self.config.backoff.delay(attempt, self._rng)

    def _end(self, by: Literal["guest", "agent", "system"], reason: str) -> None:
        if self.state is GcState.ENDED:
            return
        for message in self._buffer.pop_all():  # relay what already arrived before the end
            if message.sender.id != self.member_id:
                self._release(message)
        had_socket = self._connected or self.state is GcState.CONNECTING
        self.state = GcState.ENDED
        self._events.append(Ended(by=by, reason=reason))
        # The message in flight is settled by its own REST answer; the queued ones will never go.
        for item in self._outbox.drain_queued():
            self._reject(item, None, "chat has ended", maybe=item.uncertain)
        self._connected = False
        self._reconnect.cancel()
        self._create_at = self._leave_at = self._history_deadline = self._history_retry = None
        if had_socket:
            self._intents.append(CloseSocket(reason=reason))
