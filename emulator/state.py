"""The emulated org's conversations and what may happen to them.

Everything here is Genesys' domain behaviour: who the participants of each kind of conversation are,
when a conversation counts as live, what a disconnect cascades to, and the domain errors that come
with it (400 ``active.conversation``, 409 on a second live cobrowse, ...). Request parsing and
response shapes live in the route and view modules.

Concurrency: every public method takes one re-entrant lock, so each operation is atomic for threads;
in the event loop they run without awaiting, so they are atomic for tasks too.

Guest sockets: a Guest Chat conversation is not routed until its event stream attaches
(:meth:`EmulatorState.attach_event_stream`); :class:`WebMessagingSession` is the per-token session a
Web Messaging guest socket configures, whose guest messages start and continue a messaging
conversation routed to the deployment's queue. The socket layer (``emulator/ws_*.py``) learns what
happened from the ledger's listeners, never from here.
"""

from __future__ import annotations

import os
import random
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from emulator.clock import Clock
from emulator.errors import ApiError
from emulator.fixtures import Agent, Fixtures, Queue
from emulator.ledger import Ledger, LedgerKind

LIVE = frozenset({"alerting", "connected"})
GUEST_CHAT_PROVIDER = "PureCloud Webchat v2"


class Kind(StrEnum):
    MESSAGING = "messaging"  # agentless / queue outbound: sms, whatsapp, open, webmessaging, apple
    THIRD_PARTY_CHAT = "third_party_chat"  # POST /api/v2/conversations/chats: routing only, no room
    GUEST_CHAT = "guest_chat"  # POST /api/v2/webchat/guest/conversations


class Media(StrEnum):
    MESSAGE = "message"
    CHAT = "chat"
    COBROWSE = "cobrowse"


# Ids come from a private Mersenne Twister (seeded from the OS), not from uuid4(): ids must be unique,
# not unpredictable - none is a credential (OAuth tokens, the JWT key and cobrowse join codes come
# from ``secrets``) - and uuid4() costs a syscall and a UUID object per id, several per guest message.
# A private generator: a test seeding ``random`` must not make ids repeat; reseeded in a forked child,
# as ``random``'s own is, so that parent and child do not draw the same ids.
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # the version and variant bits
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


def new_id() -> str:
    """A random (version 4) UUID, as text."""
    h = "%032x" % (_ids.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass
class Communication:
    """One media leg of a participant; its ``id`` is the communicationId (a guest chat memberId)."""

    media: Media
    state: str
    id: str = field(default_factory=new_id)
    direction: str | None = None
    connected_time: datetime | None = None
    disconnected_time: datetime | None = None
    disconnect_type: str | None = None
    provider: str | None = None
    room_id: str | None = None
    messenger_type: str | None = None
    from_address: str | None = None
    to_address: str | None = None
    cobrowse_session_id: str | None = None
    cobrowse_role: str | None = None
    initial_state: str = ""

    def __post_init__(self) -> None:
        self.initial_state = self.initial_state or self.state

    @property
    def live(self) -> bool:
        return self.state in LIVE


@dataclass
class MemberInfo:
    """Guest Chat member details (a guest's memberInfo, or an agent's name)."""

    role: str  # CUSTOMER | AGENT
    display_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = field(default=None, repr=False)
    phone_number: str | None = field(default=None, repr=False)
    avatar_image_url: str | None = None
    custom_fields: dict[str, str] | None = None


@dataclass
class Participant:
    purpose: str
    communications: list[Communication]
    id: str = field(default_factory=new_id)
    start_time: datetime | None = None  # stamped when the participant is added
    name: str | None = None
    connected_time: datetime | None = None
    end_time: datetime | None = None
    user_id: str | None = None
    queue_id: str | None = None
    queue_name: str | None = None
    external_contact_id: str | None = None
    address: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    member: MemberInfo | None = None
    wrapup_code: str | None = None

    def comms(self, media: Media | None = None) -> list[Communication]:
        return [c for c in self.communications if media is None or c.media == media]

    @property
    def live(self) -> bool:
        return any(c.live for c in self.communications)


@dataclass
class StoredMessage:
    participant_id: str
    communication_id: str
    timestamp: datetime
    text: str = field(repr=False)
    direction: str  # outbound (to the customer) | inbound (from the customer)
    status: str = "sent"
    body_type: str = "standard"  # Guest Chat bodyType
    id: str = field(default_factory=new_id)


@dataclass
class CobrowseSession:
    id: str
    join_code: str = field(repr=False)
    websocket_url: str
    started: datetime
    offer_ends: datetime
    ended: datetime | None = None

    @property
    def live(self) -> bool:
        return self.ended is None


@dataclass
class GuestChat:
    deployment_id: str
    queue: Queue
    guest_member_id: str
    # No routing happens until the guest's websocket is attached to eventStreamUri.
    event_stream_attached: bool = False


NaturalKey = tuple[str, str, str]  # (messenger type, fromAddress, recipient)


@dataclass
class Conversation:
    kind: Kind
    start_time: datetime
    id: str = field(default_factory=new_id)
    participants: list[Participant] = field(default_factory=list)
    end_time: datetime | None = None
    messages: list[StoredMessage] = field(default_factory=list)
    cobrowse: list[CobrowseSession] = field(default_factory=list)
    natural_key: NaturalKey | None = None
    messenger_type: str | None = None
    guest_chat: GuestChat | None = None
    # A Web Messaging guest's conversation: its session (every ledger entry about it names the session).
    webmessaging_session_id: str | None = None

    @property
    def live(self) -> bool:
        return self.end_time is None

    @property
    def live_cobrowse(self) -> CobrowseSession | None:
        return next((s for s in self.cobrowse if s.live), None)

    def participant(self, participant_id: str) -> Participant | None:
        return next((p for p in self.participants if p.id == participant_id), None)

    def by_communication(self, communication_id: str) -> tuple[Participant, Communication] | None:
        for p in self.participants:
            for c in p.communications:
                if c.id == communication_id:
                    return p, c
        return None

    def with_purpose(self, purpose: str, *, live: bool = True) -> Iterator[Participant]:
        return (p for p in self.participants if p.purpose == purpose and (p.live or not live))

    def message(self, message_id: str) -> StoredMessage | None:
        return next((m for m in self.messages if m.id == message_id), None)


@dataclass
class SessionEvent:
    """A presence event of a Web Messaging session (history shows it next to the messages)."""

    presence: str  # Join (the guest's autoStart) | Disconnect (the agent or flow ended the conversation)
    direction: str  # Inbound (from the guest) | Outbound (to the guest)
    at: datetime
    id: str = field(default_factory=new_id)
    read_only: bool = False


@dataclass
class WebMessagingSession:
    """A Web Messaging guest session, keyed by the guest's session token (a client-made UUID).

    A session outlives its conversations: after one ends without read-only, the guest's next message
    starts another; its history spans them all. ``token`` is None for a session opened by the admin
    helper (JWT only, no socket).
    """

    deployment_id: str
    created: datetime
    id: str = field(default_factory=new_id)
    conversation_id: str | None = None  # the latest conversation
    token: str | None = field(default=None, repr=False)
    # The guest's identity in the org: agentless sends to it reach the live conversation.
    external_contact_id: str = field(default_factory=new_id)
    conversation_ids: list[str] = field(default_factory=list)
    events: list[SessionEvent] = field(default_factory=list)
    expires_at: float | None = None  # epoch seconds; the lifetime runs from the last message
    read_only: bool = False
    expired: bool = False
    cleared: bool = False  # Presence Clear: gone for good; the token may start a new session

    @property
    def live(self) -> bool:
        return not (self.expired or self.cleared)


# One line of a Web Messaging session's history: a stored message of one of its conversations, or an event.
HistoryItem = tuple[Conversation, StoredMessage] | SessionEvent


class EmulatorState:
    def __init__(self, clock: Clock, ledger: Ledger, fixtures: Fixtures) -> None:
        self.clock = clock
        self.ledger = ledger
        self.fixtures = fixtures
        self.lock = threading.RLock()
        self._conversations: dict[str, Conversation] = {}
        self._live_by_key: dict[NaturalKey, str] = {}
        self._webmessaging: dict[str, WebMessagingSession] = {}
        self._webmessaging_by_token: dict[str, WebMessagingSession] = {}

    # --- lookups ----------------------------------------------------------------------------------
    def get(self, conversation_id: str) -> Conversation | None:
        with self.lock:
            return self._conversations.get(conversation_id)

    def require(
        self,
        conversation_id: str,
        *,
        code: str = "conversation.error.conversation.not.found",
        kinds: tuple[Kind, ...] = tuple(Kind),
    ) -> Conversation:
        """The conversation, or the 404 ``code`` (also when it is not one of ``kinds``)."""
        conv = self.get(conversation_id)
        if conv is None or conv.kind not in kinds:
            raise ApiError(404, code)
        return conv

    def conversations(self) -> list[Conversation]:
        """Every conversation, oldest first (a snapshot: the analytics query filters it)."""
        with self.lock:
            return list(self._conversations.values())

    def live_for(self, key: NaturalKey) -> Conversation | None:
        with self.lock:
            conv_id = self._live_by_key.get(key)
            return self._conversations.get(conv_id) if conv_id else None

    # --- helpers ----------------------------------------------------------------------------------
    def _record(self, kind: LedgerKind, conv: Conversation | None, **fields: str | int | None) -> None:
        if conv is not None and conv.webmessaging_session_id:
            fields.setdefault("session_id", conv.webmessaging_session_id)
        self.ledger.record(self.clock.now(), kind, conversation_id=conv.id if conv else None, **fields)

    def _open(self, conv: Conversation) -> Conversation:
        self._conversations[conv.id] = conv
        return conv

    def _add(self, conv: Conversation, participant: Participant) -> Participant:
        """Add a participant now: stamps its start time and the connect time of connected legs."""
        now = self.clock.now()
        participant.start_time = now
        for comm in participant.communications:
            if comm.state == "connected":
                self._connect(comm, participant)
        conv.participants.append(participant)
        return participant

    def _connect(self, comm: Communication, participant: Participant) -> None:
        now = self.clock.now()
        comm.state = "connected"
        comm.connected_time = comm.connected_time or now
        participant.connected_time = participant.connected_time or now

    # --- messaging --------------------------------------------------------------------------------
    def send_agentless(
        self,
        *,
        key: NaturalKey,
        to_address: str | None,
        external_contact_id: str | None,
        text: str,
        use_existing: bool,
    ) -> tuple[Conversation, StoredMessage]:
        """Agentless send: into the live conversation for ``key`` when allowed, else a new one."""
        messenger_type, from_address, _ = key
        with self.lock:
            conv = self.live_for(key)
            if conv is not None and not use_existing:
                raise ApiError(400, "active.conversation")
            if conv is None:
                conv = self._new_messaging(key, to_address, external_contact_id)
            sender = next(conv.with_purpose("api"), None) or self._add(
                conv,
                Participant(
                    purpose="api",
                    name="Agentless",
                    communications=[
                        Communication(
                            media=Media.MESSAGE,
                            state="connected",
                            direction="outbound",
                            messenger_type=messenger_type,
                            from_address=from_address,
                            to_address=to_address,
                        )
                    ],
                ),
            )
            return conv, self.add_message(conv, sender, text, kind="message.sent", by="client")

    def create_queue_outbound(
        self, *, key: NaturalKey, queue: Queue, to_address: str, external_contact_id: str | None
    ) -> Conversation:
        """POST /api/v2/conversations/messages: a conversation on a queue; fails while one is live."""
        with self.lock:
            if self.live_for(key) is not None:
                raise ApiError(400, "active.conversation")
            conv = self._new_messaging(key, to_address, external_contact_id)
            self._add(conv, _acd(queue, Communication(
                media=Media.MESSAGE, state="connected", direction="outbound", messenger_type=key[0],
                from_address=key[1], to_address=to_address,
            )))
            return conv

    def _new_messaging(
        self,
        key: NaturalKey,
        to_address: str | None,
        external_contact_id: str | None,
        *,
        direction: str = "outbound",
        by: str = "client",
        session_id: str | None = None,
    ) -> Conversation:
        messenger_type, from_address, _ = key
        conv = self._open(
            Conversation(
                kind=Kind.MESSAGING,
                start_time=self.clock.now(),
                natural_key=key,
                messenger_type=messenger_type,
                webmessaging_session_id=session_id,
            )
        )
        contact = next((c for c in self.fixtures.external_contacts if c.id == external_contact_id), None)
        customer = self._add(
            conv,
            Participant(
                purpose="customer",
                name=f"{contact.first_name} {contact.last_name}" if contact else None,
                external_contact_id=external_contact_id,
                address=to_address,
                communications=[
                    Communication(
                        media=Media.MESSAGE,
                        state="connected",
                        direction=direction,
                        messenger_type=messenger_type,
                        from_address=from_address,
                        to_address=to_address,
                    )
                ],
            ),
        )
        self._live_by_key[key] = conv.id
        self._record(
            "conversation.created",
            conv,
            participant_id=customer.id,
            messenger_type=messenger_type,
            external_contact_id=external_contact_id,
            by=by,
        )
        return conv

    def add_message(
        self,
        conv: Conversation,
        sender: Participant,
        text: str,
        *,
        kind: LedgerKind,
        by: str,
        body_type: str = "standard",
        direction: str = "outbound",
    ) -> StoredMessage:
        """Store a message from ``sender``'s first live communication (the caller checked it is live)."""
        with self.lock:
            comm = next(c for c in sender.communications if c.live and c.media != Media.COBROWSE)
            message = StoredMessage(
                participant_id=sender.id,
                communication_id=comm.id,
                timestamp=self.clock.now(),
                text=text,
                direction=direction,
                body_type=body_type,
            )
            conv.messages.append(message)
            self._record(
                kind,
                conv,
                participant_id=sender.id,
                communication_id=comm.id,
                message_id=message.id,
                purpose=sender.purpose,
                by=by,
                text_length=len(text),
            )
            return message

    # --- disconnects ------------------------------------------------------------------------------
    def disconnect_conversation(self, conv: Conversation, *, disconnect_type: str, by: str) -> None:
        """End every participant (already ended: nothing happens, which is success)."""
        with self.lock:
            for participant in conv.participants:
                self._disconnect(conv, participant, None, disconnect_type, by)
            self._end_if_idle(conv, by)

    def disconnect_participant(
        self,
        conv: Conversation,
        participant: Participant,
        *,
        disconnect_type: str,
        by: str,
        media: Media | None = None,
    ) -> None:
        """Disconnect a participant's legs (of ``media``, or all of them).

        The conversation ends when its customer leaves - the others are disconnected as ``peer`` - or
        when nobody is left.
        """
        with self.lock:
            self._disconnect(conv, participant, media, disconnect_type, by)
            if participant.purpose == "customer" and media != Media.COBROWSE and not participant.live:
                for other in conv.participants:
                    self._disconnect(conv, other, None, "peer", by)
            self._end_if_idle(conv, by)

    def _disconnect(
        self, conv: Conversation, participant: Participant, media: Media | None, disconnect_type: str, by: str
    ) -> None:
        was_live = participant.live
        now = self.clock.now()
        for comm in participant.comms(media):
            if comm.live:
                comm.state = "disconnected"
                comm.disconnected_time = now
                comm.disconnect_type = disconnect_type
        self._end_cobrowse_if_idle(conv, by)
        if was_live and not participant.live:
            participant.end_time = now
            self._record(
                "participant.disconnected",
                conv,
                participant_id=participant.id,
                purpose=participant.purpose,
                disconnect_type=disconnect_type,
                by=by,
            )
            if conv.guest_chat and participant.member and participant.member.role == "CUSTOMER":
                self._record("guest.session.ended", conv, member_id=conv.guest_chat.guest_member_id, by=by)

    def wrap_up(self, participant: Participant, code: str | None) -> None:
        with self.lock:
            participant.wrapup_code = code

    def _end_if_idle(self, conv: Conversation, by: str) -> None:
        if conv.live and not any(p.live for p in conv.participants):
            conv.end_time = self.clock.now()
            if conv.natural_key and self._live_by_key.get(conv.natural_key) == conv.id:
                del self._live_by_key[conv.natural_key]
            self._record("conversation.disconnected", conv, by=by)

    # --- cobrowse ---------------------------------------------------------------------------------
    def start_cobrowse(self, conv: Conversation, *, websocket_base: str, offer_s: int) -> CobrowseSession:
        """One live cobrowse per conversation: a second start while one is live is a 409 conflict."""
        with self.lock:
            if not conv.live:
                raise ApiError(404, "not.found")
            if conv.kind != Kind.MESSAGING or conv.messenger_type != "webmessaging":
                raise ApiError(
                    400,
                    "bad.request",
                    message="Cobrowse can only be started in a web messaging or voice conversation.",
                )
            if conv.live_cobrowse is not None:
                raise ApiError(409, "request.conflict")
            now = self.clock.now()
            session_id = new_id()
            session = CobrowseSession(
                id=session_id,
                join_code=f"{secrets.randbelow(10**9):09d}",
                websocket_url=f"{websocket_base}/cobrowse/v1/sessions/{session_id}",
                started=now,
                offer_ends=now + timedelta(seconds=offer_s),
            )
            conv.cobrowse.append(session)
            for participant in conv.participants:
                if participant.live and participant.purpose in ("customer", "agent"):
                    role = "sharer" if participant.purpose == "customer" else "viewer"
                    participant.communications.append(
                        Communication(
                            media=Media.COBROWSE,
                            state="connected",
                            connected_time=now,
                            provider="Genesys Cloud Cobrowse",
                            cobrowse_session_id=session.id,
                            cobrowse_role=role,
                        )
                    )
            self._record("cobrowse.started", conv, cobrowse_session_id=session.id, by="client")
            return session

    def end_cobrowse(self, conv: Conversation, *, by: str) -> None:
        with self.lock:
            for participant in conv.participants:
                self._disconnect(conv, participant, Media.COBROWSE, "client", by)
            self._end_if_idle(conv, by)

    def _end_cobrowse_if_idle(self, conv: Conversation, by: str) -> None:
        session = conv.live_cobrowse
        if session is None:
            return
        legs = [c for p in conv.participants for c in p.comms(Media.COBROWSE) if c.cobrowse_session_id == session.id]
        if not any(c.live for c in legs):
            session.ended = self.clock.now()
            self._record("cobrowse.ended", conv, cobrowse_session_id=session.id, by=by)

    # --- third-party chat -------------------------------------------------------------------------
    def create_third_party_chat(
        self, *, queue: Queue, provider: str, customer_name: str | None, attributes: dict[str, str]
    ) -> Conversation:
        """Routing only: Genesys tracks the interaction but has no chat room (``roomId`` NONE)."""
        with self.lock:
            conv = self._open(Conversation(kind=Kind.THIRD_PARTY_CHAT, start_time=self.clock.now()))
            customer = self._add(
                conv,
                Participant(
                    purpose="customer",
                    name=customer_name,
                    attributes=attributes,
                    communications=[self._room_less_leg(provider)],
                ),
            )
            self._add(conv, _acd(queue, self._room_less_leg(provider)))
            self._record("chat.created", conv, participant_id=customer.id, queue_id=queue.id, by="client")
            return conv

    @staticmethod
    def _room_less_leg(provider: str | None) -> Communication:
        return Communication(
            media=Media.CHAT, state="connected", direction="inbound", provider=provider, room_id="NONE"
        )

    # --- Guest Chat -------------------------------------------------------------------------------
    def create_guest_chat(
        self, *, deployment_id: str, queue: Queue, member: MemberInfo
    ) -> tuple[Conversation, Participant]:
        with self.lock:
            conv = self._open(Conversation(kind=Kind.GUEST_CHAT, start_time=self.clock.now()))
            guest = self._add(
                conv,
                Participant(
                    purpose="customer",
                    name=member.display_name,
                    member=member,
                    communications=[
                        Communication(
                            media=Media.CHAT,
                            state="alerting",
                            direction="inbound",
                            provider=GUEST_CHAT_PROVIDER,
                        )
                    ],
                ),
            )
            conv.guest_chat = GuestChat(
                deployment_id=deployment_id, queue=queue, guest_member_id=guest.communications[0].id
            )
            self._record(
                "guest.session.created",
                conv,
                participant_id=guest.id,
                member_id=conv.guest_chat.guest_member_id,
                queue_id=queue.id,
                by="guest",
            )
            return conv, guest

    def attach_event_stream(self, conv: Conversation) -> None:
        """The guest's websocket attached: the guest is connected and the chat is routed to its queue."""
        with self.lock:
            chat = conv.guest_chat
            if chat is None or chat.event_stream_attached or not conv.live:
                return
            chat.event_stream_attached = True
            guest = self.guest_member(conv)
            self._connect(guest.communications[0], guest)
            self._add(conv, _acd(chat.queue, Communication(
                media=Media.CHAT, state="connected", direction="inbound", provider=GUEST_CHAT_PROVIDER,
            )))
            self._record("guest.event_stream.attached", conv, member_id=chat.guest_member_id, by="guest")

    def detach_event_stream(self, conv: Conversation) -> None:
        """The guest's websocket closed. While the guest is in the chat this is a drop, not a leave:
        the chat goes on and the guest may reattach while its JWT is valid."""
        with self.lock:
            chat = conv.guest_chat
            if chat is not None and conv.live and self.guest_member(conv).live:
                self._record("guest.event_stream.detached", conv, member_id=chat.guest_member_id, by="guest")

    def require_chat_open(self, conv: Conversation, sender: Participant) -> None:
        """Genesys refuses chat lines and typing while the chat is not active (not routed yet, or
        ended) and from a member who has left."""
        if conv.guest_chat is None or not conv.guest_chat.event_stream_attached or not conv.live:
            raise ApiError(
                400,
                "chat.error.conversation.state",
                message_with_params="Conversation State",
                message_params={"message": "The conversation is not active"},
            )
        if not sender.live:
            raise ApiError(400, "chat.error.member.state")

    def guest_typing(self, conv: Conversation, guest: Participant) -> datetime:
        with self.lock:
            self.require_chat_open(conv, guest)
            self._record("guest.typing", conv, member_id=guest.communications[0].id, by="guest")
            return self.clock.now()

    def post_chat_message(self, conv: Conversation, sender: Participant, text: str, body_type: str) -> StoredMessage:
        """A chat line from a member: the guest (``guest.message.received``) or an agent."""
        with self.lock:
            self.require_chat_open(conv, sender)
            from_guest = sender.purpose == "customer"
            return self.add_message(
                conv,
                sender,
                text,
                kind="guest.message.received" if from_guest else "agent.message.sent",
                by="guest" if from_guest else "agent",
                body_type=body_type,
                direction="inbound" if from_guest else "outbound",
            )

    def guest_member(self, conv: Conversation) -> Participant:
        assert conv.guest_chat is not None
        found = conv.by_communication(conv.guest_chat.guest_member_id)
        assert found is not None
        return found[0]

    def members(self, conv: Conversation) -> list[tuple[Participant, Communication]]:
        """Guest Chat members: participants with member info, each with its chat leg."""
        return [(p, c) for p in conv.participants if p.member for c in p.comms(Media.CHAT)]

    # --- simulated agents (admin helpers) ---------------------------------------------------------
    def agent_join(self, conv: Conversation, agent: Agent) -> Participant:
        """An agent answers: joins connected, and the queue (acd) leg ends as routed."""
        with self.lock:
            if not conv.live:
                raise ApiError(409, "request.conflict", message="The conversation has ended.")
            if conv.guest_chat and not conv.guest_chat.event_stream_attached:
                raise ApiError(
                    409,
                    "request.conflict",
                    message="A guest chat is not routed before its event stream is attached.",
                )
            if conv.kind == Kind.MESSAGING:
                leg = Communication(
                    media=Media.MESSAGE,
                    state="connected",
                    direction="outbound",
                    messenger_type=conv.messenger_type,
                )
            elif conv.kind == Kind.THIRD_PARTY_CHAT:
                leg = self._room_less_leg(provider=None)
            else:
                leg = Communication(
                    media=Media.CHAT, state="connected", direction="inbound", provider=GUEST_CHAT_PROVIDER
                )
            member = MemberInfo(role="AGENT", display_name=agent.name) if conv.guest_chat else None
            participant = self._add(
                conv,
                Participant(
                    purpose="agent",
                    name=agent.name,
                    user_id=agent.id,
                    member=member,
                    communications=[leg],
                ),
            )
            for acd in list(conv.with_purpose("acd")):
                self._disconnect(conv, acd, None, "transfer", "agent")
            self._record(
                "agent.joined",
                conv,
                participant_id=participant.id,
                user_id=agent.id,
                communication_id=participant.communications[0].id,
                by="agent",
            )
            return participant

    def live_agent(self, conv: Conversation) -> Participant:
        agent = next(conv.with_purpose("agent"), None)
        if agent is None:
            raise ApiError(409, "request.conflict", message="No agent is connected to this conversation.")
        return agent

    def agent_send(self, conv: Conversation, text: str) -> StoredMessage:
        """The connected agent answers (``agent.message.sent``)."""
        with self.lock:
            agent = self.live_agent(conv)
            if conv.kind is Kind.GUEST_CHAT:
                return self.post_chat_message(conv, agent, text, "standard")
            if conv.kind is Kind.THIRD_PARTY_CHAT:
                raise ApiError(409, "request.conflict", message="A third-party chat has no room to post into.")
            return self.add_message(conv, agent, text, kind="agent.message.sent", by="agent")

    def agent_typing(self, conv: Conversation) -> None:
        """The connected agent types (``agent.typing``); the guest sockets show an indicator."""
        with self.lock:
            agent = self.live_agent(conv)
            if conv.kind is Kind.GUEST_CHAT:
                self.require_chat_open(conv, agent)
            elif conv.kind is Kind.THIRD_PARTY_CHAT:
                raise ApiError(409, "request.conflict", message="A third-party chat has no room to type into.")
            leg = next(c for c in agent.communications if c.live and c.media != Media.COBROWSE)
            member_id = leg.id if conv.guest_chat else None
            self._record(
                "agent.typing", conv, participant_id=agent.id, communication_id=leg.id, member_id=member_id, by="agent"
            )

    def agent_disconnect(self, conv: Conversation, *, end_conversation: bool) -> None:
        """The agent leaves; with ``end_conversation`` everyone else is disconnected too (as ``peer``)."""
        with self.lock:
            agent = self.live_agent(conv)
            self._disconnect(conv, agent, None, "client", "agent")
            if end_conversation:
                for other in conv.participants:
                    self._disconnect(conv, other, None, "peer", "agent")
            self._end_if_idle(conv, "agent")

    def customer_disconnect(self, conv: Conversation) -> None:
        """The customer leaves (closes the messenger, Presence Clear, guest leaves): the conversation ends."""
        with self.lock:
            customer = next(conv.with_purpose("customer"), None)
            if customer is not None:
                self.disconnect_participant(conv, customer, disconnect_type="endpoint", by="customer")

    # --- web messaging sessions -------------------------------------------------------------------
    def open_webmessaging_session(self, deployment_id: str) -> WebMessagingSession:
        with self.lock:
            session = WebMessagingSession(deployment_id=deployment_id, created=self.clock.now())
            self._webmessaging[session.id] = session
            return session

    def webmessaging_session(self, session_id: str) -> WebMessagingSession | None:
        with self.lock:
            return self._webmessaging.get(session_id)

    def webmessaging_sessions(self) -> list[WebMessagingSession]:
        with self.lock:
            return list(self._webmessaging.values())

    def webmessaging_session_by_token(self, token: str) -> WebMessagingSession | None:
        with self.lock:
            return self._webmessaging_by_token.get(token)

    def session_of(self, conv: Conversation) -> WebMessagingSession | None:
        """The Web Messaging guest session a conversation belongs to, if any."""
        with self.lock:
            return self._webmessaging.get(conv.webmessaging_session_id) if conv.webmessaging_session_id else None

    def configure_webmessaging_session(
        self, token: str, deployment_id: str, *, start_new: bool, duration_s: int
    ) -> tuple[WebMessagingSession, bool]:
        """configureSession: the token's session, or a new one; returns it and whether it is new.

        ``start_new`` only matters on a read-only session: the same token starts over (Genesys'
        transport sends closeSession, then configureSession with startNew, after a read-only end).
        """
        with self.lock:
            session = self._webmessaging_by_token.get(token)
            if session is not None and session.read_only and start_new and session.live:
                session.read_only = False
                session.conversation_id = None
                self._touch(session, duration_s)
                return session, True
            if session is not None:
                return session, False
            session = WebMessagingSession(deployment_id=deployment_id, created=self.clock.now(), token=token)
            self._touch(session, duration_s)
            self._webmessaging[session.id] = session
            self._webmessaging_by_token[token] = session
            self._record("guest.session.created", None, session_id=session.id, by="guest")
            return session, True

    def webmessaging_expired(self, session: WebMessagingSession) -> bool:
        return session.expired or (session.expires_at is not None and self.clock.time() >= session.expires_at)

    def _touch(self, session: WebMessagingSession, duration_s: int) -> None:
        session.expires_at = self.clock.time() + duration_s

    def _webmessaging_conversation(self, session: WebMessagingSession, queue: Queue) -> Conversation:
        """The session's live conversation, or a new one routed to ``queue`` (the deployment's flow)."""
        conv = self._conversations.get(session.conversation_id) if session.conversation_id else None
        if conv is not None and conv.live:
            return conv
        key: NaturalKey = ("webmessaging", session.deployment_id, session.external_contact_id)
        conv = self.live_for(key)  # a proactive (agentless) conversation to this guest: the reply joins it
        if conv is not None:
            conv.webmessaging_session_id = session.id
        else:
            conv = self._new_messaging(
                key, None, session.external_contact_id, direction="inbound", by="guest", session_id=session.id
            )
            self._add(conv, _acd(queue, Communication(
                media=Media.MESSAGE, state="connected", direction="inbound", messenger_type="webmessaging",
            )))
        session.conversation_id = conv.id
        session.conversation_ids.append(conv.id)
        return conv

    def webmessaging_guest_message(
        self,
        session: WebMessagingSession,
        text: str,
        *,
        queue: Queue,
        duration_s: int,
        attributes: dict[str, str] | None = None,
    ) -> tuple[Conversation, StoredMessage]:
        """A guest's text: into the live conversation, or one it starts (the caller checked read-only).
        ``attributes`` (the message's custom attributes) become the customer participant's."""
        with self.lock:
            conv = self._webmessaging_conversation(session, queue)
            customer = next(conv.with_purpose("customer"))
            customer.attributes.update(attributes or {})
            self._touch(session, duration_s)
            message = self.add_message(
                conv, customer, text, kind="guest.message.received", by="guest", direction="inbound"
            )
            return conv, message

    def webmessaging_join(
        self,
        session: WebMessagingSession,
        *,
        queue: Queue,
        duration_s: int,
        attributes: dict[str, str] | None = None,
    ) -> tuple[Conversation, SessionEvent]:
        """Presence Join (autoStart): the conversation starts before the guest writes anything."""
        with self.lock:
            conv = self._webmessaging_conversation(session, queue)
            next(conv.with_purpose("customer")).attributes.update(attributes or {})
            event = SessionEvent(presence="Join", direction="Inbound", at=self.clock.now())
            session.events.append(event)
            self._touch(session, duration_s)
            return conv, event

    def webmessaging_typing(self, session: WebMessagingSession) -> None:
        with self.lock:
            conv = self._conversations.get(session.conversation_id) if session.conversation_id else None
            customer = next(conv.with_purpose("customer"), None) if conv and conv.live else None
            if conv is not None and customer is not None:
                self._record("guest.typing", conv, participant_id=customer.id, by="guest")

    def clear_webmessaging_session(self, session: WebMessagingSession) -> None:
        """Presence Clear: the conversation ends and the session is gone (its token starts afresh)."""
        with self.lock:
            if not session.live:
                return
            session.cleared = True
            if session.token is not None and self._webmessaging_by_token.get(session.token) is session:
                del self._webmessaging_by_token[session.token]
            conv = self._conversations.get(session.conversation_id) if session.conversation_id else None
            if conv is not None and conv.live:
                self.customer_disconnect(conv)
            self._record("guest.session.ended", None, session_id=session.id, by="guest")

    def end_webmessaging_conversation(self, session: WebMessagingSession, *, read_only: bool) -> SessionEvent:
        """The agent or flow ended the session's conversation: an Outbound Presence Disconnect, after
        which a read-only session refuses the guest's messages."""
        with self.lock:
            session.read_only = session.read_only or read_only
            event = SessionEvent(presence="Disconnect", direction="Outbound", at=self.clock.now(), read_only=read_only)
            session.events.append(event)
            return event

    def expire_webmessaging_session(self, session: WebMessagingSession) -> bool:
        """The session's lifetime ran out (or an admin said so); True the first time."""
        with self.lock:
            if not session.live:
                return False
            session.expired = True
            conv = self._conversations.get(session.conversation_id) if session.conversation_id else None
            if conv is not None and conv.live:
                self.disconnect_conversation(conv, disconnect_type="system", by="system")
            self._record("guest.session.ended", None, session_id=session.id, by="system")
            return True

    def webmessaging_history(self, session: WebMessagingSession) -> list[HistoryItem]:
        """Everything the session's history shows, newest first: messages both ways and presence events."""
        with self.lock:
            items: list[HistoryItem] = list(session.events)
            for conv_id in session.conversation_ids:
                conv = self._conversations[conv_id]
                items.extend((conv, m) for m in conv.messages)
        return sorted(items, key=_history_time, reverse=True)


def _history_time(item: HistoryItem) -> datetime:
    return item.at if isinstance(item, SessionEvent) else item[1].timestamp


def _acd(queue: Queue, leg: Communication) -> Participant:
    """The queue's participant: the leg an interaction waits on until an agent answers."""
    return Participant(purpose="acd", queue_id=queue.id, queue_name=queue.name, communications=[leg])
