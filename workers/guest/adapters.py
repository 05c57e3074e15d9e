"""What differs between the two guest protocols, as the session runner sees it, and which one a session gets.

One adapter per protocol (:mod:`workers.guest.webmessaging`, :mod:`workers.guest.guestchat`) builds or
resumes the protocol machine, says where its socket is, what to keep as a secret or checkpoint, and
finds our own message in a history page.
"""

from __future__ import annotations

from typing import Protocol

from guest.events import Intent, OpenSocket
from guest.guestchat import GuestChatSession
from guest.ownmessage import OwnMessage
from guest.webmessaging import WebMessagingSession
from schemas.commands import GuestStart
from workers.guest.guestchat import GuestChatAdapter
from workers.guest.settings import GuestSettings
from workers.guest.store import SessionRecord, SessionSecret
from workers.guest.webmessaging import WebMessagingAdapter


class ProtocolAdapter(Protocol):
    """What differs between the two guest protocols (:mod:`workers.guest.webmessaging`,
    :mod:`workers.guest.guestchat`)."""

    protocol: str
    deployment_id: str
    machine: WebMessagingSession | GuestChatSession
    secret: SessionSecret | None
    needs_saving: bool
    resuming: bool

    def start(self, now: float) -> None: ...

    def frames(self) -> list[str]: ...

    def connection_lost(self, now: float, http_status: int | None) -> None: ...

    def socket_target(self, intent: OpenSocket) -> tuple[str, str | None]: ...

    def secret_from_answer(self, intent: Intent, body: str | None) -> SessionSecret | None: ...

    def is_history(self, intent: Intent) -> bool: ...

    def find_own(self, body: str | None, sought: OwnMessage) -> str | None: ...

    def checkpoint(self) -> str | None: ...

    def expires_at(self) -> float | None: ...

    def ids(self) -> tuple[str | None, str | None]: ...


def build_adapter(start: GuestStart, secret: SessionSecret | None, record: SessionRecord,
                  settings: GuestSettings, api_url: str) -> ProtocolAdapter:
    if start.protocol.value == "guestchat":
        return GuestChatAdapter(start, secret, settings)
    return WebMessagingAdapter(start, secret, record.checkpoint, settings, api_url)
