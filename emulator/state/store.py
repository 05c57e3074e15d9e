"""The org's conversations, and the changes every kind of conversation shares.

:class:`Conversations` holds them by id (and the live messaging conversation of each natural key),
adds participants and messages, and owns the disconnect cascade: a participant's legs end, a
cobrowse whose legs are all gone ends, the conversation ends when its customer leaves (the others
are disconnected as ``peer``) or when nobody is left. Each change is recorded in the ledger.

Concurrency: every change takes one re-entrant lock (:attr:`Conversations.lock`, which the sections
of :mod:`emulator.state` take too), so each operation is atomic for threads (a lookup by id is one
dict read, atomic without it); in the event loop they run without awaiting, so they are atomic for
tasks too.
"""

from __future__ import annotations

import threading
from datetime import timedelta

from emulator.clock import Clock
from emulator.errors import ApiError
from emulator.ledger import Ledger, LedgerKind
from emulator.state.model import (
    Communication,
    Conversation,
    Kind,
    Media,
    NaturalKey,
    Participant,
    StoredMessage,
    Template,
)


class Conversations:
    def __init__(self, clock: Clock, ledger: Ledger) -> None:
        self.clock = clock
        self.ledger = ledger
        self.lock = threading.RLock()
        self._by_id: dict[str, Conversation] = {}
        self._live_by_key: dict[NaturalKey, str] = {}

    # --- lookups ----------------------------------------------------------------------------------
    def get(self, conversation_id: str) -> Conversation | None:
        conv = self._by_id.get(conversation_id)  # one dict read is atomic: no lock (read per guest message)
        if conv is not None and conv.pending_disconnect is not None:
            self._settle(conv)
        return conv

    def disconnect_later(self, conv: Conversation, delay_s: float, *, disconnect_type: str, by: str) -> None:
        """Accept a disconnect that applies ``delay_s`` from now (Genesys is eventually consistent:
        a PATCH answering 200 may still read live for a while). A pending one keeps its time."""
        with self.lock:
            if conv.live and conv.pending_disconnect is None:
                due = self.clock.now() + timedelta(seconds=delay_s)
                conv.pending_disconnect = (due, disconnect_type, by)

    def _settle(self, conv: Conversation) -> None:
        with self.lock:
            pending = conv.pending_disconnect
            if pending is not None and self.clock.now() >= pending[0]:
                conv.pending_disconnect = None
                self.disconnect_conversation(conv, disconnect_type=pending[1], by=pending[2])

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

    def all(self) -> list[Conversation]:
        """Every conversation, oldest first (a snapshot: the analytics query filters it)."""
        with self.lock:
            return list(self._by_id.values())

    def reset(self) -> None:
        """Forget every conversation (the emulator was reset)."""
        with self.lock:
            self._by_id.clear()
            self._live_by_key.clear()

    def live_for(self, key: NaturalKey) -> Conversation | None:
        """The live messaging conversation of a natural key (messenger type, fromAddress, recipient)."""
        with self.lock:
            conv_id = self._live_by_key.get(key)
            return self._by_id.get(conv_id) if conv_id else None

    # --- what every kind of conversation does -----------------------------------------------------
    def record(self, kind: LedgerKind, conv: Conversation | None, **fields: str | int | None) -> None:
        """A ledger entry about ``conv``; one about a Web Messaging guest's conversation names the session."""
        if conv is not None and conv.webmessaging_session_id:
            fields.setdefault("session_id", conv.webmessaging_session_id)
        self.ledger.record(self.clock.now(), kind, conversation_id=conv.id if conv else None, **fields)

    def open(self, conv: Conversation) -> Conversation:
        """Keep a new conversation (live for its natural key, if it has one)."""
        with self.lock:
            self._by_id[conv.id] = conv
            if conv.natural_key is not None:
                self._live_by_key[conv.natural_key] = conv.id
            return conv

    def add(self, conv: Conversation, participant: Participant) -> Participant:
        """Add a participant now: stamps its start time and the connect time of connected legs."""
        with self.lock:
            participant.start_time = self.clock.now()
            for comm in participant.communications:
                if comm.state == "connected":
                    self.connect(comm, participant)
            conv.participants.append(participant)
            return participant

    def connect(self, comm: Communication, participant: Participant) -> None:
        now = self.clock.now()
        comm.state = "connected"
        comm.connected_time = comm.connected_time or now
        participant.connected_time = participant.connected_time or now

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
        template: Template | None = None,
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
                template=template,
            )
            conv.messages.append(message)
            self.record(
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

    def wrap_up(self, participant: Participant, code: str | None) -> None:
        with self.lock:
            participant.wrapup_code = code

    # --- disconnects ------------------------------------------------------------------------------
    def disconnect_conversation(self, conv: Conversation, *, disconnect_type: str, by: str) -> None:
        """End every participant (already ended: nothing happens, which is success)."""
        with self.lock:
            for participant in conv.participants:
                self.end_legs(conv, participant, None, disconnect_type, by)
            self.end_if_idle(conv, by)

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
            self.end_legs(conv, participant, media, disconnect_type, by)
            if participant.purpose == "customer" and media != Media.COBROWSE and not participant.live:
                for other in conv.participants:
                    self.end_legs(conv, other, None, "peer", by)
            self.end_if_idle(conv, by)

    def customer_disconnect(self, conv: Conversation) -> None:
        """The customer leaves (closes the messenger, Presence Clear, guest leaves): the conversation ends."""
        with self.lock:
            customer = next(conv.with_purpose("customer"), None)
            if customer is not None:
                self.disconnect_participant(conv, customer, disconnect_type="endpoint", by="customer")

    def end_legs(
        self, conv: Conversation, participant: Participant, media: Media | None, disconnect_type: str, by: str
    ) -> None:
        """Disconnect a participant's live legs (of ``media``, or all), without ending the conversation:
        the caller then decides (:meth:`end_if_idle`)."""
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
            self.record(
                "participant.disconnected",
                conv,
                participant_id=participant.id,
                purpose=participant.purpose,
                disconnect_type=disconnect_type,
                by=by,
            )
            if conv.guest_chat and participant.member and participant.member.role == "CUSTOMER":
                self.record("guest.session.ended", conv, member_id=conv.guest_chat.guest_member_id, by=by)

    def end_if_idle(self, conv: Conversation, by: str) -> None:
        """The conversation ends when nobody is left in it."""
        if conv.live and not any(p.live for p in conv.participants):
            conv.end_time = self.clock.now()
            if conv.natural_key and self._live_by_key.get(conv.natural_key) == conv.id:
                del self._live_by_key[conv.natural_key]
            self.record("conversation.disconnected", conv, by=by)

    def _end_cobrowse_if_idle(self, conv: Conversation, by: str) -> None:
        """A cobrowse ends with the last of its legs, however they were disconnected."""
        session = conv.live_cobrowse
        if session is None:
            return
        legs = [c for p in conv.participants for c in p.comms(Media.COBROWSE) if c.cobrowse_session_id == session.id]
        if not any(c.live for c in legs):
            session.ended = self.clock.now()
            self.record("cobrowse.ended", conv, cobrowse_session_id=session.id, by=by)
