"""Messaging conversations: agentless sends and queue outbound (SMS, WhatsApp, open, web messaging).

A messaging conversation is known by its natural key (messenger type, ``fromAddress``, recipient):
while one is live, another for the same key is refused with 400 ``active.conversation``, unless an
agentless send asks to use the live one. A Web Messaging guest's own conversations are opened here
too (:meth:`Messaging.open_conversation`, by :mod:`emulator.state.webmessaging`).
"""

from __future__ import annotations

from collections.abc import Callable

from emulator.errors import ApiError
from emulator.fixtures import Fixtures, Queue
from emulator.state.model import (
    Communication,
    Conversation,
    Kind,
    Media,
    NaturalKey,
    Participant,
    StoredMessage,
    Template,
    acd,
)
from emulator.state.store import Conversations

ProactiveDelivery = Callable[[Conversation], None]
"""Called with a new agentless web messaging conversation before its first message is added: the
guest's open Messenger session, if any, takes it (:mod:`emulator.state.webmessaging`)."""


class Messaging:
    def __init__(self, conversations: Conversations, fixtures: Fixtures) -> None:
        self._store = conversations
        self._fixtures = fixtures
        self.deliver_proactive: ProactiveDelivery | None = None

    def send_agentless(
        self,
        *,
        key: NaturalKey,
        to_address: str | None,
        external_contact_id: str | None,
        text: str,
        use_existing: bool,
        template: Template | None = None,
    ) -> tuple[Conversation, StoredMessage]:
        """Agentless send: into the live conversation for ``key`` when allowed, else a new one."""
        messenger_type, from_address, _ = key
        store = self._store
        with store.lock:
            conv = store.live_for(key)
            if conv is not None and not use_existing:
                raise ApiError(400, "active.conversation")
            if conv is None:
                conv = self.open_conversation(key, to_address, external_contact_id)
                if messenger_type == "webmessaging" and self.deliver_proactive is not None:
                    self.deliver_proactive(conv)
            sender = next(conv.with_purpose("api"), None) or store.add(
                conv,
                Participant(
                    purpose="api",
                    name="Agentless",
                    communications=[
                        Communication(
                            media=Media.MESSAGE,
                            state="connected",
                            direction="outbound",
                            messenger_type=messenger_type,
                            from_address=from_address,
                            to_address=to_address,
                        )
                    ],
                ),
            )
            return conv, store.add_message(conv, sender, text, kind="message.sent", by="client", template=template)

    def create_queue_outbound(
        self, *, key: NaturalKey, queue: Queue, to_address: str, external_contact_id: str | None
    ) -> Conversation:
        """POST /api/v2/conversations/messages: a conversation on a queue; fails while one is live."""
        store = self._store
        with store.lock:
            if store.live_for(key) is not None:
                raise ApiError(400, "active.conversation")
            conv = self.open_conversation(key, to_address, external_contact_id)
            store.add(conv, acd(queue, Communication(
                media=Media.MESSAGE, state="connected", direction="outbound", messenger_type=key[0],
                from_address=key[1], to_address=to_address,
            )))
            return conv

    def open_conversation(
        self,
        key: NaturalKey,
        to_address: str | None,
        external_contact_id: str | None,
        *,
        direction: str = "outbound",
        by: str = "client",
        session_id: str | None = None,
    ) -> Conversation:
        """A new live conversation for ``key`` with its customer (``conversation.created``)."""
        messenger_type, from_address, _ = key
        store = self._store
        with store.lock:
            conv = store.open(
                Conversation(
                    kind=Kind.MESSAGING,
                    start_time=store.clock.now(),
                    natural_key=key,
                    messenger_type=messenger_type,
                    webmessaging_session_id=session_id,
                )
            )
            contact = next((c for c in self._fixtures.external_contacts if c.id == external_contact_id), None)
            customer = store.add(
                conv,
                Participant(
                    purpose="customer",
                    name=f"{contact.first_name} {contact.last_name}" if contact else None,
                    external_contact_id=external_contact_id,
                    address=to_address,
                    communications=[
                        Communication(
                            media=Media.MESSAGE,
                            state="connected",
                            direction=direction,
                            messenger_type=messenger_type,
                            from_address=from_address,
                            to_address=to_address,
                        )
                    ],
                ),
            )
            store.record(
                "conversation.created",
                conv,
                participant_id=customer.id,
                messenger_type=messenger_type,
                external_contact_id=external_contact_id,
                by=by,
            )
            return conv
