"""What the guest state machines report (events) and ask the I/O layer to do (intents).

Events say what happened in the conversation; the guest worker maps them to ``guest.*`` product
events. Intents are work for the I/O layer (open or close a socket, make a REST call: a
:class:`GenesysCall` naming its :mod:`genesys.operations` operation) whose outcome it feeds back into
the machine. Message text is kept out of ``repr`` and tokens are ``SecretStr``,
so logging an event or intent never leaks customer text or credentials.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from genesys.wire import Operation


class GuestEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SessionStarted(GuestEvent):
    """The session is usable. ``new_session``: the server created it (False: it already existed for
    this token). ``resumed``: this follows a reconnect, so it is not a new start for the product."""

    new_session: bool
    resumed: bool = False
    read_only: bool = False
    conversation_id: str | None = None


class Reconnecting(GuestEvent):
    """The connection dropped; the machine will ask for a new one after ``delay`` seconds."""

    attempt: int
    delay: float


class AgentMessage(GuestEvent):
    """Agent, bot or system text for the customer, once, in server-time order."""

    message_id: str
    text: str = Field(repr=False)
    time: datetime | None = None
    originating_entity: str | None = None
    sender_id: str | None = None


class AgentTyping(GuestEvent):
    duration_ms: float | None = None
    sender_id: str | None = None


class GuestMessageConfirmed(GuestEvent):
    """Genesys has our message ``tracing_id``; ``message_id`` is its id there."""

    tracing_id: str
    message_id: str | None = None


class MessageRejected(GuestEvent):
    """Our message ``tracing_id`` will not be delivered by this session. ``maybe_delivered``: it was
    on the wire when the session died, so Genesys may have it anyway."""

    tracing_id: str
    code: int | str | None = None
    reason: str
    maybe_delivered: bool = False


class RateLimited(GuestEvent):
    """Genesys asked us to slow down; the outbound queue is held for ``retry_after`` seconds and the
    refused message is sent again after that (it is not lost)."""

    retry_after: float


class UnknownFrame(GuestEvent):
    """A frame of a class or topic this machine does not handle; ignored."""

    kind: str


class ProtocolError(GuestEvent):
    """A frame or answer that made no sense, or an error we could not attribute to a request."""

    reason: str
    code: int | str | None = None


# --- Web Messaging ------------------------------------------------------------------------------


class ConversationDisconnected(GuestEvent):
    """The agent or flow ended the conversation (Presence Disconnect). With ``read_only`` the session
    accepts no more guest messages."""

    read_only: bool


class SessionCleared(GuestEvent):
    """The conversation was cleared (Presence Clear); it cannot be resumed."""


class ConnectionClosed(GuestEvent):
    """The session's connection is closed for good; the machine will not reconnect."""

    reason: str
    by_guest: bool = False


class SessionExpired(GuestEvent):
    """The session token is dead (SessionExpiredEvent, 4006 expired, 4007 not found)."""

    code: int | None = None


# --- Guest Chat ---------------------------------------------------------------------------------


class AgentJoined(GuestEvent):
    member_id: str
    display_name: str | None = None


class AgentLeft(GuestEvent):
    """An agent disconnected while the guest stayed connected: a transfer, not the end. If the
    conversation is really over, ``Ended`` follows."""

    member_id: str


class Ended(GuestEvent):
    """The chat is over. ``by``: guest (we left), agent (Genesys side ended it), system (we gave up:
    creation refused, credentials expired, reconnect timed out)."""

    by: Literal["guest", "agent", "system"]
    reason: str = ""


# --- Intents ------------------------------------------------------------------------------------


class Intent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GenesysCall(Intent):
    """A Genesys REST call: the I/O layer runs :attr:`operation` (one of :mod:`genesys.operations`) and
    reports back by ``request_id``: ``rest_succeeded(request_id, now, text)`` with the answer's text
    (None for a bodiless answer), which the machine reads as the operation's :mod:`genesys.models`
    model, or ``rest_failed(request_id, now, error)``."""

    request_id: str

    @property
    def operation(self) -> Operation[Any]:
        raise NotImplementedError

    @property
    def method(self) -> str:
        return self.operation.method

    @property
    def path(self) -> str:
        return self.operation.path


class OpenSocket(Intent):
    """Open the session's websocket and call ``connection_made`` (or ``connection_lost`` on failure).
    ``uri`` is set when the machine knows it (Guest Chat's eventStreamUri, which holds the JWT);
    None means the session's configured Web Messaging endpoint."""

    uri: SecretStr | None = None


class CloseSocket(Intent):
    """Close the websocket (after sending any frames still due), then call ``connection_lost``."""

    code: int = 1000
    reason: str = ""
