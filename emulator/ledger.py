"""The ledger: one entry per side effect the emulator performed, in order.

Tests and benchmarks assert on effects ("exactly one conversation was created, one message sent")
rather than on what the client believes happened - which is the point of exactly-once testing when
responses can be dropped. Entries carry ids and counts, never message text or tokens.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter

log = logging.getLogger("emulator")

LedgerKind = Literal[
    "conversation.created",
    "message.sent",
    "participant.connected",
    "participant.disconnected",
    "conversation.disconnected",
    "cobrowse.started",
    "cobrowse.ended",
    "chat.created",
    "guest.session.created",
    "guest.socket.refused",
    "guest.event_stream.attached",
    "guest.event_stream.detached",
    "guest.message.received",
    "guest.typing",
    "agent.joined",
    "agent.message.sent",
    "agent.typing",
    "guest.session.ended",
    "token.issued",
    "token.revoked",
]


@dataclass(slots=True, kw_only=True)
class LedgerEntry:
    """One side effect. A dataclass, not a model: entries are made by the emulator's own typed calls,
    several per guest message, so validating each one would only cost time; an unknown field is still
    a TypeError. The admin API dumps them as a model would (:func:`wire_page`)."""

    seq: int
    at: datetime
    kind: LedgerKind
    conversation_id: str | None = None
    participant_id: str | None = None
    communication_id: str | None = None
    message_id: str | None = None
    member_id: str | None = None
    cobrowse_session_id: str | None = None
    session_id: str | None = None  # a Web Messaging guest session (never its token)
    queue_id: str | None = None
    external_contact_id: str | None = None
    user_id: str | None = None
    client_id: str | None = None  # token.issued: the OAuth client it was issued to (an id, never a secret)
    messenger_type: str | None = None
    purpose: str | None = None
    disconnect_type: str | None = None
    # Who caused it: "client" (the REST caller), "agent", "guest", "system".
    by: str | None = None
    text_length: int | None = None


_ENTRY = TypeAdapter(LedgerEntry)


def wire_page(entries: Iterable[LedgerEntry]) -> dict[str, list[dict[str, object]]]:
    """``GET /__emulator/ledger``: entries without their empty fields, but always with
    ``conversation_id`` (null when none)."""
    dump = _ENTRY.dump_python
    return {"entries": [{"conversation_id": None, **dump(e, mode="json", exclude_none=True)} for e in entries]}


class LedgerFilter(BaseModel):
    """Query of ``GET /__emulator/ledger``: ``kind`` (repeatable), ``conversation_id``, ``after`` (seq)."""

    model_config = ConfigDict(extra="forbid")

    kind: list[LedgerKind] = []
    conversation_id: str | None = None
    after: int = 0


LedgerListener = Callable[[LedgerEntry], None]


class Ledger:
    """Append-only record of side effects; listeners see each entry as it is recorded.

    Listeners are how push channels (the guest event streams) learn what happened without the domain
    code knowing about sockets; they are called synchronously, outside the lock, and must not block.
    A listener that fails is logged and skipped: the side effect happened regardless, and the call
    that caused it must not fail because a socket could not be told.
    """

    def __init__(self) -> None:
        self._entries: list[LedgerEntry] = []
        # Replaced, never changed in place, so that record() iterates it without a copy.
        self._listeners: tuple[LedgerListener, ...] = ()
        self._lock = threading.Lock()

    def record(self, at: datetime, kind: LedgerKind, **fields: str | int | None) -> LedgerEntry:
        with self._lock:
            entry = LedgerEntry(seq=len(self._entries) + 1, at=at, kind=kind, **fields)
            self._entries.append(entry)
            listeners = self._listeners
        for listener in listeners:
            try:
                listener(entry)
            except Exception as exc:
                log.error("ledger listener failed on %s: %s", kind, type(exc).__name__)
        return entry

    def subscribe(self, listener: LedgerListener) -> Callable[[], None]:
        """Call ``listener`` for every later entry; returns the function that unsubscribes it."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                listeners = list(self._listeners)
                if listener in listeners:
                    listeners.remove(listener)
                self._listeners = tuple(listeners)

        return unsubscribe

    def entries(self, query: LedgerFilter | None = None) -> list[LedgerEntry]:
        with self._lock:
            snapshot = list(self._entries)
        if query is None:
            return snapshot
        return list(_select(snapshot, query))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _select(entries: Iterable[LedgerEntry], query: LedgerFilter) -> Iterable[LedgerEntry]:
    kinds = set(query.kind)
    for entry in entries:
        if entry.seq <= query.after:
            continue
        if kinds and entry.kind not in kinds:
            continue
        if query.conversation_id and entry.conversation_id != query.conversation_id:
            continue
        yield entry
