"""Guest Chat specifics of a guest session: build or resume the machine, where its socket is, and how
to find our own message in a history page.

The create answer (conversation id, guest member id, JWT, event stream URI) is saved in the session's
secret key before the machine sees it, so another worker can resume the same conversation: it hands
that answer to a fresh machine (:meth:`guest.guestchat.GuestChatSession.resume`) instead of creating a
second conversation, and the machine reattaches the same event stream and backfills with ``GET messages``.
"""

from __future__ import annotations

import json
import time

from pydantic import SecretStr, ValidationError

from genesys.models import WebChatMessageEntityList
from guest.common import jwt_expiry
from guest.events import Intent, OpenSocket
from guest.guestchat import CreateConversation, FetchHistory, GuestChatConfig, GuestChatSession
from guest.ownmessage import OwnMessage
from schemas.commands import GuestStart
from workers.guest.settings import GuestSettings, backoff
from workers.guest.store import SessionSecret
from workers.guest.webmessaging import SHARED_RNG


class GuestChatAdapter:
    protocol = "guestchat"

    def __init__(self, start: GuestStart, secret: SessionSecret | None, settings: GuestSettings) -> None:
        assert start.organization_id and start.queue_name and start.display_name  # GuestStart validated it
        self._created = secret.created if secret is not None else None
        self.resuming = self._created is not None
        self.deployment_id = start.deployment_id
        self.secret = secret
        self.needs_saving = False  # saved when the create answer arrives (secret_from_answer)
        self._expires: float | None = self._jwt_expiry(self._created.get_secret_value()) if self._created else None
        self.machine = GuestChatSession(GuestChatConfig(
            organization_id=start.organization_id,
            deployment_id=start.deployment_id,
            queue_name=start.queue_name,
            display_name=start.display_name,
            custom_fields=start.custom_fields or {},
            reorder_window=settings.reorder_window_s,
            dedup_capacity=settings.dedup_capacity,
            reconnect_timeout=settings.reconnect_timeout_s,
            backoff=backoff(settings),
        ), rng=SHARED_RNG)

    def start(self, now: float) -> None:
        if self._created is None:
            self.machine.start(now)  # a new chat: the CreateConversation intent goes out
        else:
            self.machine.resume(self._created.get_secret_value(), now)  # the same chat, attached again

    def frames(self) -> list[str]:
        return []  # the guest speaks REST; the event stream only listens

    def connection_lost(self, now: float, http_status: int | None) -> None:
        self.machine.connection_lost(now)

    def socket_target(self, intent: OpenSocket) -> tuple[str, str | None]:
        assert intent.uri is not None  # Guest Chat always names its event stream
        return intent.uri.get_secret_value(), None

    def secret_from_answer(self, intent: Intent, body: str | None) -> SessionSecret | None:
        """The create answer, to save before the machine acts on it."""
        if not isinstance(intent, CreateConversation) or not body:
            return None
        self._expires = self._jwt_expiry(body)
        self.secret = SessionSecret(created=SecretStr(body))
        return self.secret

    def is_history(self, intent: Intent) -> bool:
        return isinstance(intent, FetchHistory)

    def find_own(self, body: str | None, sought: OwnMessage) -> str | None:
        """The id of the message ``sought`` in a history page, else None."""
        try:
            page = WebChatMessageEntityList.model_validate_json(body or b"")
        except ValidationError:
            return None
        member = self.machine.member_id
        return sought.find((m.id, m.id, m.body, m.timestamp) for m in page.entities if m.sender.id == member)

    def checkpoint(self) -> str | None:
        return None  # dedup across workers is the Redis relay set; backfill reads from the start

    def expires_at(self) -> float | None:
        return self._expires

    def ids(self) -> tuple[str | None, str | None]:
        return self.machine.conversation_id, self.machine.member_id

    @staticmethod
    def _jwt_expiry(created_body: str) -> float | None:
        try:
            jwt = json.loads(created_body).get("jwt")
        except (ValueError, AttributeError):
            return None
        exp = jwt_expiry(jwt) if isinstance(jwt, str) else None
        return exp if exp is None or exp > time.time() else None
