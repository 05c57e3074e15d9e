"""Third-party chats (``POST /api/v2/conversations/chats``): routing only.

Genesys tracks the interaction and routes it to a queue, but has no chat room (``roomId`` NONE):
there is nothing to post text into.
"""

from __future__ import annotations

from emulator.fixtures import Queue
from emulator.state.model import Communication, Conversation, Kind, Media, Participant, acd
from emulator.state.store import Conversations


def room_less_leg(provider: str | None) -> Communication:
    """A connected chat leg of a third-party chat (customer, queue or agent)."""
    return Communication(media=Media.CHAT, state="connected", direction="inbound", provider=provider, room_id="NONE")


class ThirdPartyChats:
    def __init__(self, conversations: Conversations) -> None:
        self._store = conversations

    def create(
        self, *, queue: Queue, provider: str, customer_name: str | None, attributes: dict[str, str]
    ) -> Conversation:
        """The customer and the queue's participant, both connected (``chat.created``)."""
        store = self._store
        with store.lock:
            conv = store.open(Conversation(kind=Kind.THIRD_PARTY_CHAT, start_time=store.clock.now()))
            customer = store.add(
                conv,
                Participant(
                    purpose="customer",
                    name=customer_name,
                    attributes=attributes,
                    communications=[room_less_leg(provider)],
                ),
            )
            store.add(conv, acd(queue, room_less_leg(provider)))
            store.record("chat.created", conv, participant_id=customer.id, queue_id=queue.id, by="client")
            return conv
