"""Web Messaging guest sessions across their sockets: what one guest's connections all see.

Genesys' guest service ("shyrka") keeps a session per guest token, however many sockets (at most 3)
the guest has open. This is that layer between the conversation state and the sockets:

- configure: resume or create the token's session and bind the socket to it; a 4th socket evicts the
  oldest (ConnectionClosedEvent, then the close).
- fan-out: a frame for a session goes to all its sockets (the guest's own echoes included).
- it listens to the ledger for what others do in the session's conversation: agent (or agentless)
  text and typing become Outbound StructuredMessages; the conversation ended by anyone but the guest
  becomes an Outbound Presence Disconnect, and the session turns read-only when the config says so.
- Clear, closeSession, expiry and the admin's forced read-only, with the frames each one sends.
"""

from __future__ import annotations

from emulator.clock import Clock
from emulator.config import EmulatorConfig
from emulator.fixtures import Deployment, Fixtures
from emulator.ledger import Ledger, LedgerEntry
from emulator.state.model import new_id
from emulator.state.store import Conversations
from emulator.state.webmessaging import WebMessagingSession, WebMessagingSessions
from emulator.ws import webmessaging_frames as frames
from emulator.ws.limits import SlidingWindow
from emulator.ws.links import Link, LinkRegistry
from emulator.ws.webmessaging_frames import RequestRefused

MAX_CONNECTIONS = 3
# Conversations ended by these did not end "from the agent's side": no Presence Disconnect.
_GUEST_SIDE = frozenset({"customer", "guest"})
# The ledger kinds that push a frame to the session's sockets (see _on_entry).
_PUSHED = frozenset({"agent.message.sent", "message.sent", "agent.typing", "conversation.disconnected"})


class SessionSockets:
    """The sockets of each Web Messaging session (``links``) and what they are told of ``sessions``."""

    def __init__(
        self,
        ledger: Ledger,
        clock: Clock,
        config: EmulatorConfig,
        links: LinkRegistry,
        conversations: Conversations,
        sessions: WebMessagingSessions,
        fixtures: Fixtures,
    ) -> None:
        self._clock = clock
        self._fixtures = fixtures
        self._config = config
        self._links = links
        self._conversations = conversations
        self._sessions = sessions
        self._message_rates: dict[str, SlidingWindow] = {}
        self._upgrade_rates: dict[str, SlidingWindow] = {}  # per deployment (and window)
        self._forced_read_only: set[str] = set()
        ledger.subscribe(self._on_entry)

    def reset(self) -> None:
        self._message_rates.clear()
        self._upgrade_rates.clear()
        self._forced_read_only.clear()

    # --- sockets --------------------------------------------------------------------------------------
    def configure(
        self, link: Link, token: str, deployment_id: str, *, start_new: bool
    ) -> tuple[WebMessagingSession, bool]:
        """Resume or create the token's session and bind ``link`` to it; returns (session, new)."""
        duration_s = self._config.webmessaging_session_duration_s
        session, new = self._sessions.configure(token, deployment_id, start_new=start_new, duration_s=duration_s)
        if session.deployment_id != deployment_id:
            raise RequestRefused(400, "The session token belongs to another deployment")
        self.refuse_expired(session)
        links = self._links
        links.attach(link, session.id)
        for oldest in links.of_session(session.id)[:-MAX_CONNECTIONS]:
            self._close_link(oldest)
        return session, new

    def session(self, token: str | None) -> WebMessagingSession:
        """The live session of a request's token, else the error frame it gets (4007 / 4006)."""
        session = self._sessions.by_token(token) if token else None
        if session is None:
            raise RequestRefused(4007, "Session not found")
        self.refuse_expired(session)
        return session

    def refuse_expired(self, session: WebMessagingSession) -> None:
        if self._sessions.expired(session):
            self.expire(session)
            raise RequestRefused(4006, "Session has expired")

    def upgrade_allowed(self, deployment: Deployment) -> int | None:
        """None when a new guest socket may open on ``deployment``; else the seconds until one may
        (its ``connections_per_minute``, counted over any minute: ``webmessaging_connection_window_s``)."""
        if not self._config.webmessaging_limits_enabled:
            return None
        period_s = self._config.webmessaging_connection_window_s
        key = f"{deployment.id}/{period_s}"
        window = self._upgrade_rates.get(key)
        if window is None:
            window = self._upgrade_rates[key] = SlidingWindow(deployment.connections_per_minute, period_s)
        return window.hit(self._clock.time())

    def message_allowed(self, session: WebMessagingSession) -> None:
        """The deployment's messages per second per session, across its sockets."""
        if not self._config.webmessaging_limits_enabled:
            return
        window = self._message_rates.get(session.id)
        if window is None:
            deployment = self._fixtures.deployment(session.deployment_id, "webmessaging")
            limit = deployment.messages_per_second if deployment is not None else Deployment.model_fields[
                "messages_per_second"].default
            window = self._message_rates[session.id] = SlidingWindow(limit, 1.0)
        retry_after = window.hit(self._clock.time())
        if retry_after is not None:
            raise frames.TooManyRequests(retry_after, "Message rate too high for this session")

    def fanout(self, session_id: str, frame: str, *, shapeable: bool = True) -> None:
        for link in self._links.of_session(session_id):
            link.send(frame, shapeable=shapeable)

    def _close_link(self, link: Link) -> None:
        """ConnectionClosedEvent, then the close: the client must not reconnect on its own."""
        self._links.attach(link, None)
        link.send(frames.connection_closed())
        link.close(1000, "Connection closed")

    # --- session lifecycle ----------------------------------------------------------------------------
    def clear(self, session: WebMessagingSession, tracing_id: str | None) -> None:
        """Presence Clear: the conversation ends for good; every socket gets SessionClearedEvent, then
        ConnectionClosedEvent and the close."""
        self._sessions.clear(session)
        links = self._links.of_session(session.id)
        for link in links:
            link.send(frames.session_cleared(tracing_id))
        for link in links:
            self._close_link(link)
        self._message_rates.pop(session.id, None)

    def close(self, session: WebMessagingSession, link: Link, *, close_all: bool, tracing_id: str | None) -> None:
        """closeSession: the asking socket gets SessionResponse ``connected: false`` and leaves the
        session; with ``closeAllConnections`` every other socket is closed (ConnectionClosedEvent)."""
        duration_s = self._config.webmessaging_session_duration_s
        body = frames.session_response(session, connected=False, new_session=False, duration_s=duration_s)
        link.send(frames.encode("response", "SessionResponse", body, tracing_id=tracing_id))
        self._links.attach(link, None)
        if close_all:
            for other in self._links.of_session(session.id):
                self._close_link(other)

    def expire(self, session: WebMessagingSession) -> None:
        """The session's lifetime is over: SessionExpiredEvent to its sockets (once); its token is dead."""
        if self._sessions.expire(session):
            self.fanout(session.id, frames.session_expired(), shapeable=False)

    def force_read_only(self, session: WebMessagingSession) -> None:
        """End the session's conversation as a ReadOnly Conversation Disconnect would, whatever the config."""
        conversations = self._conversations
        conv = conversations.get(session.conversation_id) if session.conversation_id else None
        if conv is not None and conv.live:
            self._forced_read_only.add(session.id)
            conversations.disconnect_conversation(conv, disconnect_type="client", by="system")  # -> _on_entry
        else:
            event = self._sessions.end_conversation(session, read_only=True)
            self.fanout(session.id, frames.encode("message", "StructuredMessage", frames.presence(event)))

    # --- what others do in the session's conversation -------------------------------------------------
    def _on_entry(self, entry: LedgerEntry) -> None:
        if entry.kind not in _PUSHED or entry.session_id is None or entry.conversation_id is None:
            return
        session = self._sessions.get(entry.session_id)
        conv = self._conversations.get(entry.conversation_id)
        if session is None or conv is None or not session.live:
            return
        body = None
        if entry.kind in ("agent.message.sent", "message.sent") and entry.message_id:
            message = conv.message(entry.message_id)
            body = frames.structured(conv, message) if message else None
        elif entry.kind == "agent.typing":
            body = frames.agent_typing(new_id(), entry.at)
        elif (
            entry.kind == "conversation.disconnected"
            and entry.by not in _GUEST_SIDE
            and entry.conversation_id == session.conversation_id
        ):
            forced = session.id in self._forced_read_only
            self._forced_read_only.discard(session.id)
            deployment = self._fixtures.deployment(session.deployment_id, "webmessaging")
            if not forced and deployment is not None and not deployment.conversation_disconnect:
                return  # Conversation Disconnect off (Genesys' default): the guest is not told
            type_ = deployment.disconnect_type if deployment is not None else None
            read_only = forced or (type_ == "ReadOnly" if type_ else self._config.webmessaging_disconnect_read_only)
            body = frames.presence(self._sessions.end_conversation(session, read_only=read_only))
        if body is not None:
            self.fanout(session.id, frames.encode("message", "StructuredMessage", body))
