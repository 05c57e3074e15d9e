"""The records of the emulated org: conversations, their participants, media legs and messages.

Plain data with the questions that need no other record (is it live, which participant has this
communication); every change to them goes through the store (:mod:`emulator.state.store`) and the
section of the media concerned. Ids are random version 4 UUIDs from :func:`new_id`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from emulator.fixtures import Queue

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
    wrapup_required: bool = False  # an agent of a mandatory wrap-up queue: leaving needs a code

    @property
    def owes_wrapup(self) -> bool:
        """A live agent who may not leave without a wrap-up code (none given yet)."""
        return self.wrapup_required and self.wrapup_code is None and self.live

    def comms(self, media: Media | None = None) -> list[Communication]:
        return [c for c in self.communications if media is None or c.media == media]

    @property
    def live(self) -> bool:
        return any(c.live for c in self.communications)


@dataclass(frozen=True)
class Template:
    """A Response Management template sent (WhatsApp): its response id and body parameters (id, value)."""

    response_id: str
    parameters: tuple[tuple[str, str], ...] = ()


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
    template: Template | None = None  # a template message (WhatsApp); ``text`` is then empty


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
    # A disconnect accepted but not applied yet (eventual consistency): when it applies, and its
    # disconnect type and actor. The store applies it on the first lookup at or after that time.
    pending_disconnect: tuple[datetime, str, str] | None = None

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


def acd(queue: Queue, leg: Communication) -> Participant:
    """The queue's participant: the leg an interaction waits on until an agent answers."""
    return Participant(purpose="acd", queue_id=queue.id, queue_name=queue.name, communications=[leg])
