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
| ``guest.message.received``, ``agent.message.sent`` | message (the stored line; sender by id)         |
| ``guest.typing``, ``agent.typing``             | typing-indicator                                    |
| ``participant.disconnected`` (a member)        | member-change DISCONNECTED                          |

plus a ``channel.metadata`` heartbeat every ``heartbeat_interval_s`` and a ``pong`` for each
``{"message": "ping"}``. Attaching to a chat whose guest has left gets the guest's DISCONNECTED at
once. A socket closed while the guest is still in the chat is a drop, not a leave (ledger
``guest.event_stream.detached``): the chat goes on and the guest may reattach while the JWT is valid;
nothing missed is replayed (history REST backfills). As on Genesys, frames name members and the
conversation by ``{id}`` alone: who a member is (role, name) comes only from ``GET .../members/{id}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from emulator.auth import GUEST_CHAT_ISSUER, GuestJwts
from emulator.clock import Clock
from emulator.config import EmulatorConfig
from emulator.ledger import Ledger, LedgerEntry
from emulator.state.guestchat import GuestChats, guest_member
from emulator.state.model import Conversation, Kind, Media
from emulator.state.store import Conversations
from emulator.ws import guestchat_frames as frames
from emulator.ws.links import Link, LinkRegistry

log = logging.getLogger("emulator.ws")


class GuestChatStreams:
    """Serves the event streams (:meth:`serve`) and turns ledger entries about Guest Chats into frames
    for the streams attached to them."""

    def __init__(
        self,
        ledger: Ledger,
        clock: Clock,
        config: EmulatorConfig,
        jwts: GuestJwts,
        links: LinkRegistry,
        conversations: Conversations,
        guest_chats: GuestChats,
    ) -> None:
        self._clock = clock
        self._config = config
        self._jwts = jwts
        self._links = links
        self._conversations = conversations
        self._guest_chats = guest_chats
        ledger.subscribe(self._on_entry)

    # --- a stream ---------------------------------------------------------------------------------
    async def serve(self, websocket: WebSocket) -> None:
        conv = self._authorized(websocket.path_params["jwt"])
        if conv is None:
            await websocket.close()  # before accept: the server answers the upgrade with 403
            return
        await websocket.accept()
        link = Link("guestchat", websocket, self._clock.now())
        link.conversation_id = conv.id
        self._links.add(link)  # before attaching, so the stream sees its own CONNECTED

        async def on_text(text: str) -> None:
            try:
                ping = json.loads(text)
            except ValueError:
                return
            if isinstance(ping, dict) and ping.get("message") == "ping":
                link.send(frames.channel_metadata(frames.PONG))

        try:
            self._guest_chats.attach_event_stream(conv)
            guest = guest_member(conv)
            if not guest.live:
                leg = guest.communications[0]
                at = leg.disconnected_time or self._clock.now()
                link.send(frames.member_change(conv, leg.id, "DISCONNECTED", at))
            await link.run(on_text, [self._heartbeats(link)])
        finally:
            self._links.remove(link)
            if self._conversations.get(conv.id) is conv:  # not after a reset, whose ledger has nothing of this chat
                self._guest_chats.detach_event_stream(conv)

    def _authorized(self, jwt: str) -> Conversation | None:
        """The guest's chat if the JWT is this emulator's, valid, and the guest's own; else None."""
        claims = self._jwts.decode(jwt)
        if claims is None or claims.iss != GUEST_CHAT_ISSUER or self._jwts.is_revoked(claims):
            return None
        if self._clock.time() >= claims.exp or claims.data.conv is None:
            return None
        conv = self._conversations.get(claims.data.conv)
        if conv is None or conv.kind is not Kind.GUEST_CHAT or conv.guest_chat is None:
            return None
        return conv if conv.guest_chat.guest_member_id == claims.data.sub else None

    async def _heartbeats(self, link: Link) -> None:
        while True:
            await asyncio.sleep(self._config.heartbeat_interval_s)  # read each time: PATCH applies at once
            link.send(frames.channel_metadata(frames.HEARTBEAT))

    # --- what happens in the chats ----------------------------------------------------------------

    def _on_entry(self, entry: LedgerEntry) -> None:
        # An entry naming a Web Messaging session is about a messaging conversation, never a Guest Chat.
        if entry.conversation_id is None or entry.session_id is not None:
            return
        links = self._links.of_conversation(entry.conversation_id)
        conv = self._conversations.get(entry.conversation_id) if links else None
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
                yield frames.member_join(conv, found[1], at)
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


def routes(streams: GuestChatStreams) -> list[WebSocketRoute]:
    return [WebSocketRoute("/v1/token/{jwt}", streams.serve, name="event_stream")]
