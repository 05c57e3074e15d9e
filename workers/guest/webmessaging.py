"""Web Messaging specifics of a guest session: build or resume the machine, where its socket is, and
how to find our own message in a history page.

Resuming is what the protocol is built for: the same client-made session token, configured again on a
new socket, is the same Genesys session (``newSession: false``); the machine then backfills what was
missed from history. The token is saved (in the session's secret key) before the first socket opens,
so a worker that dies at any point leaves enough for another to resume.
"""

from __future__ import annotations

import contextlib
import random
import uuid

from pydantic import SecretStr, ValidationError

from genesys.models import WebMessagingMessageEntityList
from guest.events import Intent, OpenSocket
from guest.ownmessage import OwnMessage
from guest.webmessaging import FetchMessageHistory, RelayCheckpoint, WebMessagingConfig, WebMessagingSession
from guest.webmessaging_frames import StructuredMessage
from schemas.commands import GuestStart
from workers.guest.network import webmessaging_url
from workers.guest.settings import GuestSettings, backoff, message_interval_s
from workers.guest.store import SessionSecret

SHARED_RNG = random.Random()
"""Backoff jitter for every session of the worker: a Random per session would cost ~5 KB each."""
CHECKPOINT_IDS = 64
"""Agent message ids kept in a saved checkpoint; the Redis relay set is the real dedup."""


class WebMessagingAdapter:
    protocol = "webmessaging"

    def __init__(self, start: GuestStart, secret: SessionSecret | None, checkpoint: str | None,
                 settings: GuestSettings, api_url: str) -> None:
        self.resuming = secret is not None and secret.token is not None
        token = secret.token if secret is not None and secret.token is not None else SecretStr(str(uuid.uuid4()))
        self.secret = SessionSecret(token=token)
        self.needs_saving = not self.resuming
        resume_from = None
        if self.resuming:
            # Any checkpoint (even an empty one) tells the machine this is a restart: it backfills.
            resume_from = RelayCheckpoint()
            if checkpoint:
                with contextlib.suppress(ValidationError):  # unreadable: resume without it
                    resume_from = RelayCheckpoint.model_validate_json(checkpoint)
        self.machine = WebMessagingSession(WebMessagingConfig(
            deployment_id=start.deployment_id,
            token=token,
            auto_start=settings.webmessaging_auto_start,
            clear_on_end=settings.webmessaging_clear_on_end,
            custom_attributes=start.custom_attributes or {},
            reorder_window=settings.reorder_window_s,
            origin=start.origin,
            dedup_capacity=settings.dedup_capacity,
            reconnect_timeout=settings.reconnect_timeout_s,
            message_interval=message_interval_s(settings),
            backoff=backoff(settings),
            checkpoint=resume_from,
        ), rng=SHARED_RNG)
        self._url = webmessaging_url(api_url, start.deployment_id)
        self.deployment_id = start.deployment_id
        self._origin = start.origin

    def start(self, now: float) -> None:
        self.machine.start(now)

    def frames(self) -> list[str]:
        return self.machine.data_to_send()

    def connection_lost(self, now: float, http_status: int | None) -> None:
        self.machine.connection_lost(now, http_status=http_status)

    def socket_target(self, intent: OpenSocket) -> tuple[str, str | None]:
        return self._url, self._origin

    def secret_from_answer(self, intent: Intent, body: str | None) -> SessionSecret | None:
        return None  # the token is ours from the start

    def is_history(self, intent: Intent) -> bool:
        return isinstance(intent, FetchMessageHistory)

    def find_own(self, body: str | None, sought: OwnMessage) -> str | None:
        """The id of the message ``sought`` in a history page, else None."""
        try:
            page = WebMessagingMessageEntityList.model_validate_json(body or b"")
        except ValidationError:
            return None
        # The machine's own reading of an entity (its dedup key and time), as its backfill reads it.
        inbound = (m for m in map(StructuredMessage.from_history, page.entities) if m.direction == "Inbound")
        return sought.find((m.dedup_key, m.dedup_key, m.text, m.time) for m in inbound)

    def checkpoint(self) -> str | None:
        cp = self.machine.checkpoint()
        return RelayCheckpoint(seen_ids=cp.seen_ids[-CHECKPOINT_IDS:], watermark=cp.watermark).model_dump_json()

    def expires_at(self) -> float | None:
        return self.machine.expires_at

    def ids(self) -> tuple[str | None, str | None]:
        return None, None  # the guest protocol never names the conversation
