"""The Guest Chat event stream: ``ws://host:port/v1/token/<jwt>`` (the ``eventStreamUri`` of create).

The JWT in the path is the guest's (signed here, Guest Chat issuer, not expired, its conversation and
member); anything else is refused with HTTP 403 on the upgrade. Attaching routes the chat
(:meth:`GuestChats.attach_event_stream`, what ``/__emulator/.../guest/attach`` does without a
socket) and the guest reads CONNECTED. The stream only pushes; the guest acts over REST. What it
pushes comes from the ledger (:class:`GuestChatStreams`):

| ledger entry                                   | frames                                              |
|------------------------------------------------|-----------------------------------------------------|
| ``guest.event_stream.attached``                | member-change guest CONNECTED                       |
| ``agent.joined``                               | member-change agent ALERTING, CONNECTED; member-join |
| ``guest.message.received``, ``agent.message.sent`` | message (the stored WebChatMessage)             |
| ``guest.typing``, ``agent.typing``             | typing-indicator                                    |
| ``participant.disconnected`` (a member)        | member-change DISCONNECTED                          |

plus a ``channel.metadata`` heartbeat every ``heartbeat_interval_s`` and a ``pong`` for each
``{"message": "ping"}``. Attaching to a chat whose guest has left gets the guest's DISCONNECTED at
once. A socket closed while the guest is still in the chat is a drop, not a leave (ledger
``guest.event_stream.detached``): the chat goes on and the guest may reattach while the JWT is valid;
nothing missed is replayed (history REST backfills).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from emulator.auth import GUEST_CHAT_ISSUER
from emulator.ledger import LedgerEntry
from emulator.state.guestchat import guest_member
from emulator.state.model import Conversation, Kind, Media
from emulator.ws import guestchat_frames as frames
from emulator.ws.links import Link

if TYPE_CHECKING:
    from emulator.runtime import Emulator

log = logging.getLogger("emulator.ws")


class GuestChatStreams:
    """Turns ledger entries about Guest Chats into frames for their attached streams."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator
        emulator.ledger.subscribe(self._on_entry)

    def _on_entry(self, entry: LedgerEntry) -> None:
        # An entry naming a Web Messaging session is about a messaging conversation, never a Guest Chat.
        if entry.conversation_id is None or entry.session_id is not None:
            return
        links = self._emulator.links.of_conversation(entry.conversation_id)
        conv = self._emulator.state.conversations.get(entry.conversation_id) if links else None
        if conv is None or conv.guest_chat is None:
            return
        for frame in self._render(conv, entry):
            for link in links:
                link.send(frame, shapeable=True)

    @staticmethod
    def _render(conv: Conversation, entry: LedgerEntry) -> Iterator[str]:
        at = entry.at
        if entry.kind == "guest.event_stream.attached" and entry.member_id:
            yield frames.member_change(conv, entry.member_id, "CONNECTED", at)
        elif entry.kind == "agent.joined" and entry.communication_id:
            found = conv.by_communication(entry.communication_id)
            if found is not None:
                yield frames.member_change(conv, entry.communication_id, "ALERTING", at)
                yield frames.member_change(conv, entry.communication_id, "CONNECTED", at)
                yield frames.member_join(conv, *found, at)
        elif entry.kind in ("guest.message.received", "agent.message.sent") and entry.message_id:
            stored = conv.message(entry.message_id)
            if stored is not None:
                yield frames.message(conv, stored)
        elif entry.kind in ("guest.typing", "agent.typing") and entry.member_id:
            yield frames.typing(conv, entry.member_id, at)
        elif entry.kind == "participant.disconnected" and entry.participant_id:
            participant = conv.participant(entry.participant_id)
            if participant is not None and participant.member is not None:
                for leg in participant.comms(Media.CHAT):
                    yield frames.member_change(conv, leg.id, "DISCONNECTED", at)


def _authorized(emulator: Emulator, jwt: str) -> Conversation | None:
    """The guest's chat if the JWT is this emulator's, valid, and the guest's own; else None."""
    claims = emulator.jwts.decode(jwt)
    if claims is None or claims.iss != GUEST_CHAT_ISSUER or emulator.jwts.is_revoked(claims):
        return None
    if emulator.clock.time() >= claims.exp or claims.data.conv is None:
        return None
    conv = emulator.state.conversations.get(claims.data.conv)
    if conv is None or conv.kind is not Kind.GUEST_CHAT or conv.guest_chat is None:
        return None
    return conv if conv.guest_chat.guest_member_id == claims.data.sub else None


async def _heartbeats(link: Link, emulator: Emulator) -> None:
    while True:
        await asyncio.sleep(emulator.config.heartbeat_interval_s)  # read each time: PATCH applies at once
        link.send(frames.channel_metadata(frames.HEARTBEAT))


async def event_stream(websocket: WebSocket) -> None:
    emulator: Emulator = websocket.app.state.emulator
    conv = _authorized(emulator, websocket.path_params["jwt"])
    if conv is None:
        await websocket.close()  # before accept: the server answers the upgrade with 403
        return
    await websocket.accept()
    state = emulator.state
    link = Link("guestchat", websocket, emulator.clock.now())
    link.conversation_id = conv.id
    emulator.links.add(link)  # before attaching, so the stream sees its own CONNECTED

    async def on_text(text: str) -> None:
        try:
            ping = json.loads(text)
        except ValueError:
            return
        if isinstance(ping, dict) and ping.get("message") == "ping":
            link.send(frames.channel_metadata(frames.PONG))

    try:
        state.guest_chats.attach_event_stream(conv)
        guest = guest_member(conv)
        if not guest.live:
            leg = guest.communications[0]
            link.send(frames.member_change(conv, leg.id, "DISCONNECTED", leg.disconnected_time or emulator.clock.now()))
        await link.run(on_text, [_heartbeats(link, emulator)])
    finally:
        emulator.links.remove(link)
        if emulator.state is state:  # not after a reset, whose ledger has nothing of this chat
            state.guest_chats.detach_event_stream(conv)


ROUTES = [WebSocketRoute("/v1/token/{jwt}", event_stream)]
