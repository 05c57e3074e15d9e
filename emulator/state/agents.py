"""An agent in a conversation: joins, writes, types, leaves (the admin helpers and the simulated agent).

Joining ends the queue's (acd) leg as routed (``transfer``). Where the agent writes depends on the
kind of conversation: a Guest Chat line, a messaging message; a third-party chat has no room.
"""

from __future__ import annotations

from emulator.errors import ApiError
from emulator.fixtures import Agent, Fixtures
from emulator.state.chats import room_less_leg
from emulator.state.guestchat import GuestChats, require_open
from emulator.state.model import (
    GUEST_CHAT_PROVIDER,
    Communication,
    Conversation,
    Kind,
    Media,
    MemberInfo,
    Participant,
    StoredMessage,
)
from emulator.state.store import Conversations


class Agents:
    def __init__(self, conversations: Conversations, guest_chats: GuestChats, fixtures: Fixtures) -> None:
        self._store = conversations
        self._guest_chats = guest_chats
        self._fixtures = fixtures

    def join(self, conv: Conversation, agent: Agent) -> Participant:
        """An agent answers: joins connected, and the queue (acd) leg ends as routed."""
        store = self._store
        with store.lock:
            if not conv.live:
                raise ApiError(409, "request.conflict", message="The conversation has ended.")
            if conv.guest_chat and not conv.guest_chat.event_stream_attached:
                raise ApiError(
                    409,
                    "request.conflict",
                    message="A guest chat is not routed before its event stream is attached.",
                )
            if conv.kind == Kind.MESSAGING:
                leg = Communication(
                    media=Media.MESSAGE,
                    state="connected",
                    direction="outbound",
                    messenger_type=conv.messenger_type,
                )
            elif conv.kind == Kind.THIRD_PARTY_CHAT:
                leg = room_less_leg(provider=None)
            else:
                leg = Communication(
                    media=Media.CHAT, state="connected", direction="inbound", provider=GUEST_CHAT_PROVIDER
                )
            member = MemberInfo(role="AGENT", display_name=agent.name) if conv.guest_chat else None
            # The agent answers for the queue the interaction waited on, and takes on its wrap-up rule.
            routed = next(conv.with_purpose("acd"), None)
            queue = self._fixtures.queue_by_id(routed.queue_id) if routed and routed.queue_id else None
            participant = store.add(
                conv,
                Participant(
                    purpose="agent",
                    name=agent.name,
                    user_id=agent.id,
                    member=member,
                    communications=[leg],
                    queue_id=queue.id if queue else None,
                    queue_name=queue.name if queue else None,
                    wrapup_required=bool(queue and queue.wrapup_required),
                ),
            )
            for queue_leg in list(conv.with_purpose("acd")):
                store.end_legs(conv, queue_leg, None, "transfer", "agent")
            store.record(
                "agent.joined",
                conv,
                participant_id=participant.id,
                user_id=agent.id,
                communication_id=participant.communications[0].id,
                by="agent",
            )
            return participant

    def send(self, conv: Conversation, text: str) -> StoredMessage:
        """The connected agent answers (``agent.message.sent``)."""
        store = self._store
        with store.lock:
            agent = _live_agent(conv)
            if conv.kind is Kind.GUEST_CHAT:
                return self._guest_chats.post_message(conv, agent, text, "standard")
            if conv.kind is Kind.THIRD_PARTY_CHAT:
                raise ApiError(409, "request.conflict", message="A third-party chat has no room to post into.")
            return store.add_message(conv, agent, text, kind="agent.message.sent", by="agent")

    def typing(self, conv: Conversation) -> None:
        """The connected agent types (``agent.typing``); the guest sockets show an indicator."""
        store = self._store
        with store.lock:
            agent = _live_agent(conv)
            if conv.kind is Kind.GUEST_CHAT:
                require_open(conv, agent)
            elif conv.kind is Kind.THIRD_PARTY_CHAT:
                raise ApiError(409, "request.conflict", message="A third-party chat has no room to type into.")
            leg = next(c for c in agent.communications if c.live and c.media != Media.COBROWSE)
            member_id = leg.id if conv.guest_chat else None
            store.record(
                "agent.typing", conv, participant_id=agent.id, communication_id=leg.id, member_id=member_id, by="agent"
            )

    def disconnect(self, conv: Conversation, *, end_conversation: bool) -> None:
        """The agent leaves; with ``end_conversation`` everyone else is disconnected too (as ``peer``)."""
        store = self._store
        with store.lock:
            agent = _live_agent(conv)
            store.end_legs(conv, agent, None, "client", "agent")
            if end_conversation:
                for other in conv.participants:
                    store.end_legs(conv, other, None, "peer", "agent")
            store.end_if_idle(conv, "agent")


def _live_agent(conv: Conversation) -> Participant:
    agent = next(conv.with_purpose("agent"), None)
    if agent is None:
        raise ApiError(409, "request.conflict", message="No agent is connected to this conversation.")
    return agent
