"""Guest Chat specifics of a guest session: build or resume the machine, where its socket is, and how
to find our own message in a history page.

The create answer (conversation id, guest member id, JWT, event stream URI) is saved in the session's
secret key before the machine sees it, so another worker can resume the same conversation: it replays
that answer to a fresh machine instead of creating a second conversation, then reattaches the same
event stream and backfills with ``GET messages`` (see :meth:`GuestChatAdapter.start`).
"""

from __future__ import annotations

import json
import time

from pydantic import SecretStr, ValidationError

from guest.common import find_own_message, jwt_expiry
from guest.events import Intent, OpenSocket
from guest.guestchat import CreateConversation, FetchHistory, GuestChatConfig, GuestChatSession
from guest.guestchat_frames import WebChatMessageEntityList
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
        self.secret = secret
        self.needs_saving = False  # saved when the create answer arrives (secret_from_answer)
        self._slack_s = settings.history_clock_slack_s
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
        self.machine.start(now)
        if self._created is None:
            return  # a new chat: the CreateConversation intent goes out
        # Resume. The machine has no restore entry point, so it is told, through its public inputs, what
        # happened before: its create request answered with the saved answer (no second conversation)
        # and a first attach that was lost, so that its real attach takes the reconnect path and
        # backfills history instead of assuming nothing was missed.
        (create,) = self.machine.intents_to_run()
        self.machine.rest_succeeded(create.request_id, now, self._created.get_secret_value())
        self.machine.intents_to_run()  # OpenSocket: superseded by the reconnect scheduled below
        self.machine.connection_made(now)
        self.machine.connection_lost(now)

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

    def find_own(self, body: str | None, text: str, since: float, last_own_id: str | None) -> str | None:
        try:
            page = WebChatMessageEntityList.model_validate_json(body or b"")
        except ValidationError:
            return None
        own = ((m.id, m.body, m.timestamp) for m in page.entities if m.sender.id == self.machine.member_id)
        return find_own_message(own, text, since, self._slack_s, last_own_id)

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
