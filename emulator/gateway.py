"""What Genesys' API gateway does around every call, below the routes: the correlation id, the
rate-limit headers, and the injected faults (also on websocket upgrades, see :func:`handle_websocket`).

It wraps the raw ASGI ``send`` of the server, which is what lets a fault drop the connection: under
uvicorn the server's send is a method of its request cycle, whose transport can be aborted so the
client sees the socket close without a response. Where there is no transport (an in-process
``httpx.ASGITransport``) a drop raises :class:`emulator.faults.ConnectionDropped` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from emulator.config import EmulatorConfig
from emulator.errors import CORRELATION_HEADER, error_response
from emulator.faults import NO_EFFECT, ConnectionDropped, FaultInjector, FaultSpec
from emulator.ratelimit import RateLimitStatus
from emulator.ws.links import RAW_SEND_KEY

ADMIN_PREFIX = "/__emulator"
_CORRELATION = CORRELATION_HEADER.lower().encode()

Next = Callable[[Scope, Receive, Send], Awaitable[None]]


def _with_headers(send: Send, state: MutableMapping[str, Any]) -> Send:
    """``send`` that adds ``ININ-Correlation-Id`` and the ``inin-ratelimit-*`` headers."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            headers.append((_CORRELATION, state["correlation_id"].encode()))
            limit: RateLimitStatus | None = state.get("ratelimit")
            if limit is not None:
                headers.extend((k.encode(), v.encode()) for k, v in limit.headers().items())
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


async def handle(
    faults: FaultInjector, config: EmulatorConfig, scope: Scope, receive: Receive, send: Send, app: Next
) -> None:
    state: MutableMapping[str, Any] = scope.setdefault("state", {})
    state["correlation_id"] = str(uuid.uuid4())
    reply = _with_headers(send, state)
    path: str = scope["path"]
    fault = None if path.startswith(ADMIN_PREFIX) else faults.take(scope["method"], path)
    if fault is None:
        await app(scope, receive, reply)
        return
    await _inject(fault, config.max_hang_ms, scope, receive, send, reply, app)


async def _inject(
    fault: FaultSpec, max_hang_ms: int, scope: Scope, receive: Receive, send: Send, reply: Send, app: Next
) -> None:
    if fault.latency_ms:
        await asyncio.sleep(fault.latency_ms / 1000)
    if fault.status is not None:
        await error_response(Request(scope), fault.error())(scope, receive, reply)
        return
    if fault.drop is None:
        if fault.no_effect:
            scope["state"][NO_EFFECT] = True  # the handler answers as usual and changes nothing
        await app(scope, receive, reply)  # latency only
        return
    if fault.drop == "after":
        await app(scope, receive, _discard)  # the call takes effect; only its answer is lost
    elif fault.drop == "hang":
        limit_ms = fault.hang_ms if fault.hang_ms is not None else max_hang_ms
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_until_disconnect(receive), timeout=limit_ms / 1000)
    await _drop(receive, send)


async def _discard(message: Message) -> None:
    return None


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _drop(receive: Receive, send: Send) -> None:
    """Close the client's connection without a response."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionDropped("connection dropped by an injected fault")
    if not transport.is_closing():
        transport.abort()
    # Wait for the server to notice, so it does not answer 500 for a response never started.
    await _until_disconnect(receive)


async def handle_websocket(
    faults: FaultInjector, config: EmulatorConfig, scope: Scope, receive: Receive, send: Send, app: Next
) -> None:
    """A guest socket's upgrade. A fault matching ``GET <path>`` applies to it: ``latency_ms`` delays
    the handshake; a ``status`` refuses the upgrade with that HTTP status and an ErrorBody; any
    ``drop`` closes the connection without a handshake answer (``hang`` after holding it)."""
    scope[RAW_SEND_KEY] = send  # what an abrupt drop of an accepted socket aborts
    path: str = scope["path"]
    fault = None if path.startswith(ADMIN_PREFIX) else faults.take("GET", path)
    if fault is not None and fault.latency_ms:
        await asyncio.sleep(fault.latency_ms / 1000)
    if fault is None or (fault.status is None and fault.drop is None):
        await app(scope, receive, send)
        return
    if fault.status is not None:
        error = fault.error()
        correlation_id = str(uuid.uuid4())
        body = json.dumps(error.body(correlation_id).to_wire()).encode()
        headers = [(b"content-type", b"application/json"), (_CORRELATION, correlation_id.encode())]
        headers += [(k.encode(), v.encode()) for k, v in error.headers.items()]
        await send({"type": "websocket.http.response.start", "status": error.status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    if fault.drop == "hang":
        limit_ms = fault.hang_ms if fault.hang_ms is not None else config.max_hang_ms
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_until_ws_disconnect(receive), timeout=limit_ms / 1000)
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionDropped("connection dropped by an injected fault")
    transport.abort()
    await _until_ws_disconnect(receive)


async def _until_ws_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "websocket.disconnect":
        pass
