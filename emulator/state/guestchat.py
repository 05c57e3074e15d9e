"""Guest Chat conversations (``POST /api/v2/webchat/guest/conversations``): a chat room with members.

The guest is ALERTING until its event stream attaches (:meth:`GuestChats.attach_event_stream`):
only then is the chat routed to its queue, and until then chat lines and typing are refused (400
``chat.error.conversation.state``). A stream that closes while the guest is in the chat is a drop,
not a leave. Members are the participants with member info (the guest, the agents who joined).
"""

from __future__ import annotations

from datetime import datetime

from emulator.errors import ApiError
from emulator.fixtures import Queue
from emulator.state.model import (
    GUEST_CHAT_PROVIDER,
    Communication,
    Conversation,
    GuestChat,
    Kind,
    Media,
    MemberInfo,
    Participant,
    StoredMessage,
    acd,
)
from emulator.state.store import Conversations


def guest_member(conv: Conversation) -> Participant:
    """The guest of a Guest Chat."""
    assert conv.guest_chat is not None
    found = conv.by_communication(conv.guest_chat.guest_member_id)
    assert found is not None
    return found[0]


def members(conv: Conversation) -> list[tuple[Participant, Communication]]:
    """Guest Chat members: participants with member info, each with its chat leg."""
    return [(p, c) for p in conv.participants if p.member for c in p.comms(Media.CHAT)]


def require_open(conv: Conversation, sender: Participant) -> None:
    """Genesys refuses chat lines and typing while the chat is not active (not routed yet, or
    ended) and from a member who has left."""
    if conv.guest_chat is None or not conv.guest_chat.event_stream_attached or not conv.live:
        raise ApiError(
            400,
            "chat.error.conversation.state",
            message_with_params="Conversation State",
            message_params={"message": "The conversation is not active"},
        )
    if not sender.live:
        raise ApiError(400, "chat.error.member.state")


class GuestChats:
    def __init__(self, conversations: Conversations) -> None:
        self._store = conversations

    def create(self, *, deployment_id: str, queue: Queue, member: MemberInfo) -> tuple[Conversation, Participant]:
        """The chat and its ALERTING guest (``guest.session.created``); not routed yet."""
        store = self._store
        with store.lock:
            conv = store.open(Conversation(kind=Kind.GUEST_CHAT, start_time=store.clock.now()))
            guest = store.add(
                conv,
                Participant(
                    purpose="customer",
                    name=member.display_name,
                    member=member,
                    communications=[
                        Communication(
                            media=Media.CHAT,
                            state="alerting",
                            direction="inbound",
                            provider=GUEST_CHAT_PROVIDER,
                        )
                    ],
                ),
            )
            conv.guest_chat = GuestChat(
                deployment_id=deployment_id, queue=queue, guest_member_id=guest.communications[0].id
            )
            store.record(
                "guest.session.created",
                conv,
                participant_id=guest.id,
                member_id=conv.guest_chat.guest_member_id,
                queue_id=queue.id,
                by="guest",
            )
            return conv, guest

    def attach_event_stream(self, conv: Conversation) -> None:
        """The guest's websocket attached: the guest is connected and the chat is routed to its queue."""
        store = self._store
        with store.lock:
            chat = conv.guest_chat
            if chat is None or chat.event_stream_attached or not conv.live:
                return
            chat.event_stream_attached = True
            guest = guest_member(conv)
            store.connect(guest.communications[0], guest)
            store.add(conv, acd(chat.queue, Communication(
                media=Media.CHAT, state="connected", direction="inbound", provider=GUEST_CHAT_PROVIDER,
            )))
            store.record("guest.event_stream.attached", conv, member_id=chat.guest_member_id, by="guest")

    def detach_event_stream(self, conv: Conversation) -> None:
        """The guest's websocket closed. While the guest is in the chat this is a drop, not a leave:
        the chat goes on and the guest may reattach while its JWT is valid."""
        store = self._store
        with store.lock:
            chat = conv.guest_chat
            if chat is not None and conv.live and guest_member(conv).live:
                store.record("guest.event_stream.detached", conv, member_id=chat.guest_member_id, by="guest")

    def typing(self, conv: Conversation, guest: Participant) -> datetime:
        store = self._store
        with store.lock:
            require_open(conv, guest)
            store.record("guest.typing", conv, member_id=guest.communications[0].id, by="guest")
            return store.clock.now()

    def post_message(self, conv: Conversation, sender: Participant, text: str, body_type: str) -> StoredMessage:
        """A chat line from a member: the guest (``guest.message.received``) or an agent."""
        store = self._store
        with store.lock:
            require_open(conv, sender)
            from_guest = sender.purpose == "customer"
            return store.add_message(
                conv,
                sender,
                text,
                kind="guest.message.received" if from_guest else "agent.message.sent",
                by="guest" if from_guest else "agent",
                body_type=body_type,
                direction="inbound" if from_guest else "outbound",
            )
