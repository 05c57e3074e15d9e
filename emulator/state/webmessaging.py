"""Web Messaging guest sessions: what a guest's socket configures, and the conversations it starts.

Genesys keeps a session per guest token (a client-made UUID). The guest's first message (or Presence
Join) starts a messaging conversation routed to the deployment's queue; later ones continue it.
A session outlives its conversations: after one ends without read-only, the next message starts
another, and the history spans them all. The session expires ``duration_s`` after its last message;
Presence Clear ends it for good (its token then starts a new one). What the session's sockets are
told is the socket layer's business (:mod:`emulator.ws.webmessaging_sessions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from emulator.fixtures import Queue
from emulator.state.messaging import Messaging
from emulator.state.model import Communication, Conversation, Media, NaturalKey, StoredMessage, acd, new_id
from emulator.state.store import Conversations


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


def _history_time(item: HistoryItem) -> datetime:
    return item.at if isinstance(item, SessionEvent) else item[1].timestamp


class WebMessagingSessions:
    """The sessions, by id and by guest token."""

    def __init__(self, conversations: Conversations, messaging: Messaging) -> None:
        self._store = conversations
        self._messaging = messaging
        self._lock = conversations.lock  # one lock: a session's changes and its conversation's are one step
        self._by_id: dict[str, WebMessagingSession] = {}
        self._by_token: dict[str, WebMessagingSession] = {}
        messaging.deliver_proactive = self._take_proactive

    # --- lookups ----------------------------------------------------------------------------------
    def get(self, session_id: str) -> WebMessagingSession | None:
        return self._by_id.get(session_id)  # one dict read is atomic: no lock

    def all(self) -> list[WebMessagingSession]:
        with self._lock:
            return list(self._by_id.values())

    def by_token(self, token: str) -> WebMessagingSession | None:
        return self._by_token.get(token)  # one dict read is atomic: no lock (read per guest request)

    def reset(self) -> None:
        """Forget every session (the emulator was reset)."""
        with self._lock:
            self._by_id.clear()
            self._by_token.clear()

    def expired(self, session: WebMessagingSession) -> bool:
        return session.expired or (session.expires_at is not None and self._store.clock.time() >= session.expires_at)

    # --- sessions ---------------------------------------------------------------------------------
    def open(self, deployment_id: str) -> WebMessagingSession:
        """A session without a token (the admin helper: a JWT, no socket)."""
        with self._lock:
            session = WebMessagingSession(deployment_id=deployment_id, created=self._store.clock.now())
            self._by_id[session.id] = session
            return session

    def configure(
        self, token: str, deployment_id: str, *, start_new: bool, duration_s: int
    ) -> tuple[WebMessagingSession, bool]:
        """configureSession: the token's session, or a new one; returns it and whether it is new.

        ``start_new`` only matters on a read-only session: the same token starts over (Genesys'
        transport sends closeSession, then configureSession with startNew, after a read-only end).
        """
        with self._lock:
            session = self._by_token.get(token)
            if session is not None and session.read_only and start_new and session.live:
                session.read_only = False
                session.conversation_id = None
                self._touch(session, duration_s)
                return session, True
            if session is not None:
                return session, False
            session = WebMessagingSession(deployment_id=deployment_id, created=self._store.clock.now(), token=token)
            self._touch(session, duration_s)
            self._by_id[session.id] = session
            self._by_token[token] = session
            self._store.record("guest.session.created", None, session_id=session.id, by="guest")
            return session, True

    def _take_proactive(self, conv: Conversation) -> None:
        """An agentless send opened ``conv`` for a guest: the guest's open Messenger session on that
        deployment (the latest, if several) takes it, so its sockets hear the message and the guest's
        reply joins it; that is what ``fromAddress`` (the deployment) and ``externalContactId`` address
        (seed 000). With no open session the conversation waits for the guest's next session."""
        _, deployment_id, contact = conv.natural_key or (None, None, None)
        with self._lock:
            open_sessions = [s for s in self._by_id.values()
                             if s.deployment_id == deployment_id and s.external_contact_id == contact
                             and s.live and not s.read_only and not self.expired(s)]
            if not open_sessions:
                return
            session = max(open_sessions, key=lambda s: s.created)
            conv.webmessaging_session_id = session.id
            session.conversation_id = conv.id
            session.conversation_ids.append(conv.id)

    def clear(self, session: WebMessagingSession) -> None:
        """Presence Clear: the conversation ends and the session is gone (its token starts afresh)."""
        with self._lock:
            if not session.live:
                return
            session.cleared = True
            if session.token is not None and self._by_token.get(session.token) is session:
                del self._by_token[session.token]
            conv = self._current(session)
            if conv is not None and conv.live:
                self._store.customer_disconnect(conv)
            self._store.record("guest.session.ended", None, session_id=session.id, by="guest")

    def expire(self, session: WebMessagingSession) -> bool:
        """The session's lifetime ran out (or an admin said so); True the first time."""
        with self._lock:
            if not session.live:
                return False
            session.expired = True
            conv = self._current(session)
            if conv is not None and conv.live:
                self._store.disconnect_conversation(conv, disconnect_type="system", by="system")
            self._store.record("guest.session.ended", None, session_id=session.id, by="system")
            return True

    def _touch(self, session: WebMessagingSession, duration_s: int) -> None:
        session.expires_at = self._store.clock.time() + duration_s

    # --- the guest's conversation -----------------------------------------------------------------
    def guest_message(
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
        with self._lock:
            conv = self._conversation(session, queue)
            customer = next(conv.with_purpose("customer"))
            customer.attributes.update(attributes or {})
            self._touch(session, duration_s)
            message = self._store.add_message(
                conv, customer, text, kind="guest.message.received", by="guest", direction="inbound"
            )
            return conv, message

    def join(
        self,
        session: WebMessagingSession,
        *,
        queue: Queue,
        duration_s: int,
        attributes: dict[str, str] | None = None,
    ) -> tuple[Conversation, SessionEvent]:
        """Presence Join (autoStart): the conversation starts before the guest writes anything."""
        with self._lock:
            conv = self._conversation(session, queue)
            next(conv.with_purpose("customer")).attributes.update(attributes or {})
            event = SessionEvent(presence="Join", direction="Inbound", at=self._store.clock.now())
            session.events.append(event)
            self._touch(session, duration_s)
            return conv, event

    def typing(self, session: WebMessagingSession) -> None:
        with self._lock:
            conv = self._current(session)
            customer = next(conv.with_purpose("customer"), None) if conv and conv.live else None
            if conv is not None and customer is not None:
                self._store.record("guest.typing", conv, participant_id=customer.id, by="guest")

    def end_conversation(self, session: WebMessagingSession, *, read_only: bool) -> SessionEvent:
        """The agent or flow ended the session's conversation: an Outbound Presence Disconnect, after
        which a read-only session refuses the guest's messages."""
        with self._lock:
            session.read_only = session.read_only or read_only
            event = SessionEvent(
                presence="Disconnect", direction="Outbound", at=self._store.clock.now(), read_only=read_only
            )
            session.events.append(event)
            return event

    def history(self, session: WebMessagingSession) -> list[HistoryItem]:
        """Everything the session's history shows, newest first: messages both ways and presence events."""
        with self._lock:
            items: list[HistoryItem] = list(session.events)
            for conv_id in session.conversation_ids:
                conv = self._store.get(conv_id)
                if conv is not None:
                    items.extend((conv, m) for m in conv.messages)
        return sorted(items, key=_history_time, reverse=True)

    def _current(self, session: WebMessagingSession) -> Conversation | None:
        """The session's latest conversation, if it has one."""
        return self._store.get(session.conversation_id) if session.conversation_id else None

    def _conversation(self, session: WebMessagingSession, queue: Queue) -> Conversation:
        """The session's live conversation, or a new one routed to ``queue`` (the deployment's flow)."""
        conv = self._store.get(session.conversation_id) if session.conversation_id else None
        if conv is not None and conv.live:
            return conv
        key: NaturalKey = ("webmessaging", session.deployment_id, session.external_contact_id)
        conv = self._store.live_for(key)  # a proactive (agentless) conversation to this guest: the reply joins it
        if conv is not None:
            conv.webmessaging_session_id = session.id
        else:
            conv = self._messaging.open_conversation(
                key, None, session.external_contact_id, direction="inbound", by="guest", session_id=session.id
            )
            self._store.add(conv, acd(queue, Communication(
                media=Media.MESSAGE, state="connected", direction="inbound", messenger_type="webmessaging",
            )))
        session.conversation_id = conv.id
        session.conversation_ids.append(conv.id)
        return conv
