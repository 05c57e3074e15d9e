"""``/__emulator/...`` switches of the guest sockets: list, drop, reorder/duplicate frames, and the
Web Messaging sessions (list, expire, force read-only).

- ``GET /__emulator/sockets``: the open guest sockets (id, protocol, session, conversation).
- ``POST /__emulator/sockets/drop``: drop the selected sockets, ``abrupt`` (TCP abort: the client
  sees 1006) or with a close ``code`` (default 1001); ``socket_closing`` warns Guest Chat streams first.
- ``POST /__emulator/sockets/shape``: ``reorder`` (hold, release in reverse order) or ``duplicate``
  the next ``frames`` chat frames of the selected sockets.
- ``GET /__emulator/webmessaging/sessions``: the Web Messaging guest sessions (never their tokens).
- ``POST /__emulator/webmessaging/sessions/{id}/expire``: SessionExpiredEvent, then 4006.
- ``POST /__emulator/webmessaging/sessions/{id}/read-only``: its conversation ends read-only
  (Presence Disconnect + ``readOnly``), whatever the config.

A selector (``link_id``, ``protocol``, ``session_id``, ``conversation_id``) matches the sockets that
fit every field given; none given: all sockets. ``conversation_id`` also selects the sockets of the
Web Messaging session the conversation belongs to.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator.admin import AdminBody, answer
from emulator.errors import ApiError
from emulator.rest.api import emulator_of
from emulator.rest.bodies import parse_body
from emulator.runtime import Emulator
from emulator.state.webmessaging import WebMessagingSession
from emulator.ws import guestchat_frames
from emulator.ws.links import Link, Protocol, ShapeMode


class SocketSelector(AdminBody):
    link_id: str | None = None
    protocol: Protocol | None = None
    session_id: str | None = Field(default=None, description="A Web Messaging session id.")
    conversation_id: str | None = None


class SocketDrop(SocketSelector):
    abrupt: bool = Field(default=True, description="Abort the TCP connection (no close frame; the client sees 1006).")
    code: int = Field(default=1001, ge=1000, le=4999, description="Close code when not abrupt.")
    reason: str = Field(default="", max_length=120)
    socket_closing: bool = Field(
        default=False, description="Guest Chat streams get v2.system.socket_closing before the drop."
    )


class SocketShape(SocketSelector):
    mode: ShapeMode
    frames: int = Field(ge=1, le=100, description="How many of the next chat frames.")
    hold_ms: int = Field(default=1000, ge=0, description="reorder: release what is held after this long anyway.")


class SocketView(AdminBody):
    id: str
    protocol: Protocol
    session_id: str | None
    conversation_id: str | None
    opened_at: datetime


class SocketList(AdminBody):
    sockets: list[SocketView]


class SocketCount(AdminBody):
    sockets: int


class SessionView(AdminBody):
    session_id: str
    deployment_id: str
    external_contact_id: str
    conversation_id: str | None
    conversation_ids: list[str]
    read_only: bool
    expired: bool
    cleared: bool
    expires_at: float | None
    connections: int


class SessionList(AdminBody):
    sessions: list[SessionView]


def _selected(emulator: Emulator, selector: SocketSelector) -> list[Link]:
    links = emulator.links.select(link_id=selector.link_id, protocol=selector.protocol, session_id=selector.session_id)
    if selector.conversation_id is None:
        return links
    conv = emulator.state.conversations.get(selector.conversation_id)
    session_id = conv.webmessaging_session_id if conv else None
    return [
        link
        for link in links
        if link.conversation_id == selector.conversation_id or (session_id and link.session_id == session_id)
    ]


def _session_view(emulator: Emulator, session: WebMessagingSession) -> SessionView:
    return SessionView(
        session_id=session.id,
        deployment_id=session.deployment_id,
        external_contact_id=session.external_contact_id,
        conversation_id=session.conversation_id,
        conversation_ids=list(session.conversation_ids),
        read_only=session.read_only,
        expired=session.expired,
        cleared=session.cleared,
        expires_at=session.expires_at,
        connections=len(emulator.links.of_session(session.id)),
    )


def _session(request: Request) -> tuple[Emulator, WebMessagingSession]:
    emulator = emulator_of(request)
    session = emulator.state.webmessaging.get(request.path_params["sessionId"])
    if session is None:
        raise ApiError(404, "not.found", message="No such Web Messaging session.")
    return emulator, session


async def list_sockets(request: Request) -> Response:
    links = emulator_of(request).links.select()
    return answer(
        SocketList(
            sockets=[
                SocketView(
                    id=link.id,
                    protocol=link.protocol,
                    session_id=link.session_id,
                    conversation_id=link.conversation_id,
                    opened_at=link.opened_at,
                )
                for link in links
            ]
        )
    )


async def drop_sockets(request: Request) -> Response:
    body = await parse_body(request, SocketDrop, required=False)
    links = _selected(emulator_of(request), body)
    for link in links:
        if body.socket_closing and link.protocol == "guestchat":
            link.send(guestchat_frames.socket_closing())
        if body.abrupt:
            link.abort()
        else:
            link.close(body.code, body.reason)
    return answer(SocketCount(sockets=len(links)))


async def shape_sockets(request: Request) -> Response:
    body = await parse_body(request, SocketShape)
    links = _selected(emulator_of(request), body)
    for link in links:
        link.shape(body.mode, body.frames, body.hold_ms / 1000)
    return answer(SocketCount(sockets=len(links)))


async def list_sessions(request: Request) -> Response:
    emulator = emulator_of(request)
    return answer(SessionList(sessions=[_session_view(emulator, s) for s in emulator.state.webmessaging.all()]))


async def expire_session(request: Request) -> Response:
    emulator, session = _session(request)
    emulator.session_sockets.expire(session)
    return answer(_session_view(emulator, session))


async def read_only_session(request: Request) -> Response:
    emulator, session = _session(request)
    if not session.live:
        raise ApiError(409, "request.conflict", message="The session has ended.")
    emulator.session_sockets.force_read_only(session)
    return answer(_session_view(emulator, session))


_SESSION = "/__emulator/webmessaging/sessions/{sessionId}"
ROUTES = [
    Route("/__emulator/sockets", list_sockets, methods=["GET"]),
    Route("/__emulator/sockets/drop", drop_sockets, methods=["POST"]),
    Route("/__emulator/sockets/shape", shape_sockets, methods=["POST"]),
    Route("/__emulator/webmessaging/sessions", list_sessions, methods=["GET"]),
    Route(_SESSION + "/expire", expire_session, methods=["POST"]),
    Route(_SESSION + "/read-only", read_only_session, methods=["POST"]),
]
