"""The Web Messaging guest socket: ``ws://host:port/v1?deploymentId=<id>&application=<name>``.

The upgrade is refused with HTTP 403 (as Genesys does; clients must not retry) for an unknown or
non-messaging deployment and for an ``Origin`` outside the deployment's allowed domains, and with HTTP
429 (``Retry-After``) past the deployment's ``connections_per_minute`` new sockets in any minute (a
``guest.socket.refused`` ledger entry each). A missing
``Origin`` is allowed unless ``webmessaging_require_origin`` is set: browsers always send one, and
server-side clients (the Java SDK, Parley's guest worker) often do not.

Each accepted socket answers the guest actions (``configureSession``, ``onMessage``, ``echo``,
``getJwt``, ``closeSession``, ``getConfiguration``) with the frames of
:mod:`emulator.ws.webmessaging_frames`; what concerns the whole session goes through
:class:`emulator.ws.webmessaging_sessions.SessionSockets`. Limits: 60 requests per minute
per connection and 2 echoes per minute per connection (429 TooManyRequestsErrorMessage), the
deployment's ``messages_per_second`` per session (5 unless its fixture says otherwise), 4096 bytes of
text (4011), 2048 bytes of custom attributes (4013).
Attachments and authenticated sessions are not emulated (4000 / 403).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from emulator.auth import WEBMESSAGING_ISSUER, GuestJwtData, GuestJwts
from emulator.clock import Clock
from emulator.config import EmulatorConfig
from emulator.fixtures import Deployment, Fixtures, Queue
from emulator.ledger import Ledger
from emulator.state.model import new_id
from emulator.state.webmessaging import WebMessagingSession, WebMessagingSessions
from emulator.ws import webmessaging_frames as frames
from emulator.ws.limits import ECHOES_PER_MINUTE, REQUESTS_PER_MINUTE, SlidingWindow
from emulator.ws.links import Link, LinkRegistry
from emulator.ws.webmessaging_frames import ClientRequest, RequestRefused, TooManyRequests
from emulator.ws.webmessaging_sessions import SessionSockets
from guest.webmessaging_frames import JwtResponse

log = logging.getLogger("emulator.ws")


@dataclass(frozen=True, slots=True, eq=False)
class GuestSockets:
    """The ``/v1`` endpoint (:meth:`serve`: refuse or accept a guest socket, then serve it as a
    :class:`GuestConnection`), with the parts of the emulator its sockets use."""

    fixtures: Fixtures
    config: EmulatorConfig
    clock: Clock
    jwts: GuestJwts
    ledger: Ledger
    links: LinkRegistry
    sessions: SessionSockets  # a session as its sockets see it: lookup, limits, fan-out, lifecycle
    state: WebMessagingSessions  # the sessions' conversations

    async def serve(self, websocket: WebSocket) -> None:
        fixtures = self.fixtures
        deployment = fixtures.deployment(websocket.query_params.get("deploymentId", ""), "webmessaging")
        origin = websocket.headers.get("origin")
        if deployment is None or not deployment.allows_origin(origin, require=self.config.webmessaging_require_origin):
            await websocket.close()  # before accept: the server answers the upgrade with 403
            return
        retry_after_s = self.sessions.upgrade_allowed(deployment)
        if retry_after_s is not None:
            self.ledger.record(self.clock.now(), "guest.socket.refused", by="system")
            await websocket.send_denial_response(JSONResponse(
                {"message": "Too many new connections for this deployment", "code": "too.many.requests",
                 "status": 429}, status_code=429, headers={"Retry-After": str(retry_after_s)}))
            return
        await websocket.accept()
        link = Link("webmessaging", websocket, self.clock.now())
        self.links.add(link)
        try:
            await link.run(GuestConnection(self, link, deployment).on_text)
        finally:
            self.links.remove(link)


class GuestConnection:
    """One accepted guest socket: its requests, its limits, the session it configured."""

    def __init__(self, server: GuestSockets, link: Link, deployment: Deployment) -> None:
        self._server = server
        self._link = link
        self._deployment = deployment
        self._requests = SlidingWindow(REQUESTS_PER_MINUTE, 60.0)
        self._echoes = SlidingWindow(ECHOES_PER_MINUTE, 60.0)
        # Where the deployment's flow routes: the fixtures never change, so looked up once, not per message.
        fixtures = server.fixtures
        self._queue: Queue = fixtures.queue_by_id(deployment.queue_id or "") or fixtures.queues[0]

    async def on_text(self, text: str) -> None:
        try:
            request = ClientRequest.model_validate_json(text)
        except ValidationError:
            self._link.send(frames.error(400, "Invalid request", _tracing_id(text)))
            return
        try:
            self._limit(self._requests, "Too many requests on this connection")
            self._dispatch(request)
        except RequestRefused as refused:
            self._link.send(frames.error(refused.code, refused.text, request.tracing_id))
        except TooManyRequests as limited:
            self._link.send(frames.too_many_requests(limited.retry_after_s, limited.text, request.tracing_id))
        except Exception as exc:
            # Genesys' 5000 "unexpected"; the socket stays up. Only the type is logged: an error's text
            # may quote the guest's message.
            log.error("guest socket request %s failed: %s", request.action[:40], type(exc).__name__)
            self._link.send(frames.error(5000, "Unexpected error", request.tracing_id))

    def _dispatch(self, request: ClientRequest) -> None:
        action = request.action
        if action == "configureSession":
            self._configure(request)
        elif action == "onMessage":
            self._on_message(request)
        elif action == "echo":
            self._echo(request)
        elif action == "getJwt":
            self._get_jwt(request)
        elif action == "closeSession":
            session = self._server.sessions.session(request.token)
            self._server.sessions.close(
                session, self._link, close_all=request.close_all_connections, tracing_id=request.tracing_id
            )
        elif action == "getConfiguration":
            body = frames.configuration(self._duration_s)
            self._reply("GetConfigurationResponse", body, request)
        elif action == "configureAuthenticatedSession":
            raise RequestRefused(403, "Authenticated sessions are not enabled for this deployment")
        elif action in ("onAttachment", "getAttachment", "deleteAttachment"):
            raise RequestRefused(4000, "Attachments are not enabled for this deployment")
        else:
            raise RequestRefused(400, f"Unsupported action {action[:40]}")

    # --- actions --------------------------------------------------------------------------------------
    def _configure(self, request: ClientRequest) -> None:
        if not request.token or not request.deployment_id:
            raise RequestRefused(4020, "Missing parameter: token and deploymentId are required")
        if request.deployment_id != self._deployment.id:
            raise RequestRefused(400, "deploymentId does not match the connection's deployment")
        session, new = self._server.sessions.configure(
            self._link, request.token, request.deployment_id, start_new=request.start_new
        )
        body = frames.session_response(
            session,
            connected=True,
            new_session=new,
            duration_s=self._duration_s,
            cleared=False if request.start_new else None,
        )
        self._reply("SessionResponse", body, request)

    def _on_message(self, request: ClientRequest) -> None:
        sessions = self._server.sessions
        session = sessions.session(request.token)
        message = request.message
        if message is None:
            raise RequestRefused(4020, "Missing parameter: message")
        if message.type == "Event":
            self._on_events(session, request)
            return
        if session.read_only:
            raise RequestRefused(409, frames.READ_ONLY_TEXT)
        sessions.message_allowed(session)
        text = message.text or ""
        size = len(text.encode())
        if size > frames.MAX_TEXT_BYTES:
            raise RequestRefused(4011, f"Message length {size} is larger than {frames.MAX_TEXT_BYTES}")
        if not text.strip():
            raise RequestRefused(400, "Message text is required")
        attributes = self._custom_attributes(request)
        conv, stored = self._server.state.guest_message(
            session, text, queue=self._queue, duration_s=self._duration_s, attributes=attributes
        )
        echo = frames.structured(conv, stored)
        sessions.fanout(session.id, frames.encode("message", "StructuredMessage", echo, tracing_id=request.tracing_id))

    def _on_events(self, session: WebMessagingSession, request: ClientRequest) -> None:
        assert request.message is not None
        sessions = self._server.sessions
        for event in request.message.events:
            kind = event.presence.type if event.event_type == "Presence" and event.presence else event.event_type
            if kind == "Clear":
                if not self._deployment.conversation_clear:
                    raise RequestRefused(403, "Presence events Conversation Clear are not supported")
                sessions.clear(session, request.tracing_id)
                return
            if kind not in ("Typing", "Join"):
                raise RequestRefused(400, f"Unsupported event {kind[:40]}")
            if session.read_only:
                raise RequestRefused(409, frames.READ_ONLY_TEXT)
            sessions.message_allowed(session)
            if kind == "Typing":
                self._server.state.typing(session)  # not echoed
                continue
            attributes = self._custom_attributes(request)
            _, joined = self._server.state.join(
                session, queue=self._queue, duration_s=self._duration_s, attributes=attributes
            )
            echo = frames.presence(joined)
            sessions.fanout(
                session.id, frames.encode("message", "StructuredMessage", echo, tracing_id=request.tracing_id)
            )

    def _echo(self, request: ClientRequest) -> None:
        session = self._server.sessions.session(request.token)
        self._limit(self._echoes, "Too many echo requests on this connection")
        message = request.message
        body = frames.echo_reply(
            new_id(),
            self._server.clock.now(),
            (message.text if message else None) or "ping",
            session,
            self._duration_s,
            message.metadata if message else {},
        )
        self._reply("StructuredMessage", body, request)

    def _get_jwt(self, request: ClientRequest) -> None:
        server = self._server
        session = server.sessions.session(request.token)
        jwt, claims = server.jwts.issue(
            WEBMESSAGING_ISSUER,
            GuestJwtData(did=session.deployment_id, sub=session.id),
            server.clock.time(),
            server.config.webmessaging_jwt_expires_in_s,
        )
        server.ledger.record(server.clock.now(), "token.issued", session_id=session.id, by="guest")
        self._reply("JwtResponse", JwtResponse(jwt=jwt, exp=claims.exp), request)

    # --- helpers ----------------------------------------------------------------------------------------
    @property
    def _duration_s(self) -> int:
        return self._server.config.webmessaging_session_duration_s

    def _limit(self, window: SlidingWindow, text: str) -> None:
        if not self._server.config.webmessaging_limits_enabled:
            return
        retry_after = window.hit(self._server.clock.time())
        if retry_after is not None:
            raise TooManyRequests(retry_after, text)

    @staticmethod
    def _custom_attributes(request: ClientRequest) -> dict[str, str]:
        attributes = request.custom_attributes
        if not attributes:
            return attributes  # most messages carry none: no need to measure them
        size = len(json.dumps(attributes, separators=(",", ":"), ensure_ascii=False).encode())
        if size > frames.MAX_CUSTOM_DATA_BYTES:
            raise RequestRefused(4013, f"Custom attributes size {size} is larger than {frames.MAX_CUSTOM_DATA_BYTES}")
        return attributes

    def _reply(self, cls: str, body: BaseModel | frames.Body, request: ClientRequest) -> None:
        self._link.send(frames.encode("response", cls, body, tracing_id=request.tracing_id))


def _tracing_id(text: str) -> str | None:
    """The tracingId of a frame that did not parse as a request, if it is JSON at all."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    tracing_id = value.get("tracingId") if isinstance(value, dict) else None
    return tracing_id if isinstance(tracing_id, str) else None


def routes(sockets: GuestSockets) -> list[WebSocketRoute]:
    return [WebSocketRoute("/v1", sockets.serve, name="guest_socket")]
