"""The emulator as an ASGI app (:func:`create_app`) and as a server (:func:`serve`)."""

from __future__ import annotations

import contextlib
import gc
import logging
import re
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from emulator import gateway
from emulator.admin import conversations as admin_conversations
from emulator.admin import harness, sockets
from emulator.config import EmulatorConfig
from emulator.errors import ApiError, error_response
from emulator.rest import analytics, chats, cobrowse, conversations, guestchat, messages, oauth, webmessaging
from emulator.runtime import Emulator
from emulator.ws import guestchat as guestchat_stream
from emulator.ws import webmessaging as webmessaging_socket
from parley import logs
from parley.settings import get_settings

log = logging.getLogger("emulator")


class EmulatorApp(Starlette):
    """Starlette with the gateway in front, outside Starlette's own middleware, so that it sees the
    server's raw ``send`` (needed to drop a connection)."""

    @property
    def emulator(self) -> Emulator:
        emulator: Emulator = self.state.emulator
        return emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            emulator = self.emulator
            await gateway.handle(emulator.faults, emulator.config, scope, receive, send, super().__call__)
        elif scope["type"] == "websocket":
            emulator = self.emulator
            await gateway.handle_websocket(emulator.faults, emulator.config, scope, receive, send, super().__call__)
        else:
            await super().__call__(scope, receive, send)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """The simulated agent lives in the server's event loop, for as long as the server runs."""
    emulator: Emulator = app.state.emulator
    emulator.agent.start()
    try:
        yield
    finally:
        emulator.links.close_all(1001, "Emulator shutting down")
        await emulator.agent.stop()


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing misses: 404 for an unknown path, 405 for a known path with another method."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        # Starlette names only the first route's methods; a path can have several routes.
        allowed = {
            m
            for r in request.app.routes
            if isinstance(r, Route) and r.matches(request.scope)[0] is Match.PARTIAL
            for m in r.methods or ()
        }
        return error_response(
            request, ApiError(405, "method.not.allowed", headers={"Allow": ", ".join(sorted(allowed))})
        )
    return error_response(request, ApiError(exc.status_code, "not.found" if exc.status_code == 404 else "bad.request"))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unexpected error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return error_response(request, ApiError(500, "internal.server.error"))


def create_app(config: EmulatorConfig | None = None) -> Starlette:
    """A fresh emulator (seeded org, empty ledger) as an ASGI app; ``app.state.emulator`` is its state."""
    emulator = Emulator(config or EmulatorConfig())
    app = EmulatorApp(
        routes=[
            *harness.ROUTES,
            *admin_conversations.ROUTES,
            *oauth.ROUTES,
            *analytics.ROUTES,
            *messages.ROUTES,
            *chats.ROUTES,
            *cobrowse.ROUTES,
            *guestchat.ROUTES,
            *webmessaging.ROUTES,
            *sockets.ROUTES,
            *webmessaging_socket.routes(emulator.guest_sockets),
            *guestchat_stream.routes(emulator.guest_streams),
            # Last: /api/v2/conversations/{conversationId} would swallow /conversations/chats etc.
            *conversations.ROUTES,
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _unexpected},
        lifespan=_lifespan,
    )
    app.state.emulator = emulator
    return app


class RedactTokenPaths(logging.Filter):
    """uvicorn logs each websocket upgrade with its path ('"WebSocket /v1/token/<jwt>" [accepted]'):
    the Guest Chat event stream carries the guest JWT there, so it is masked before any handler."""

    _TOKEN = re.compile(r"(/v1/token/)[^\s?\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._TOKEN.sub(r"\1<redacted>", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = self._TOKEN.sub(r"\1<redacted>", record.msg)
        return True


def _tune_gc() -> None:
    """The emulator stands in for Genesys, whose pauses are not what a benchmark or a test measures.

    Every socket costs it a few dozen GC-tracked objects (the server's and the app's coroutines,
    queues, frames) and every side effect a ledger entry, all kept for as long as the server runs: at
    ten thousand guest sockets a full collection walks about two million objects, a pause of a
    second or more that every socket would see as latency. What exists at start-up is frozen, young
    collections are rarer, and full ones (whose only gain is the cyclic garbage of closed sockets, in
    a process that lives for one test or one benchmark) all but off."""
    gc.freeze()
    gc.set_threshold(50_000, 50, 1_000)


def serve(host: str | None = None, port: int | None = None, config: EmulatorConfig | None = None) -> None:
    """Run the emulator with uvicorn (default host/port: PARLEY_EMULATOR_HOST / PARLEY_EMULATOR_PORT)."""
    settings = get_settings()
    server_config = uvicorn.Config(
        create_app(config),
        host=host or settings.emulator_host,
        port=port or settings.emulator_port,
        # No access log: a Guest Chat eventStreamUri carries the guest JWT in its path.
        access_log=False,
        log_level="info",
        log_config=None,  # parley.logs: uvicorn's lines go through the one redaction unit, as JSON
    )
    logs.configure("emulator")
    _tune_gc()
    uvicorn.Server(server_config).run()
