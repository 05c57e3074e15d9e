"""Guest-socket clients for the emulator's websocket tests (the ``websockets`` library, over loopback).

Every frame they receive is held to the contract before a test sees it: Web Messaging frames to
``genesys-webmessaging-guest.swagger.json`` (BaseMessage, then the body against its ``class``),
Guest Chat line and typing bodies to the platform's WebChatMessage and WebChatTyping, with members
named by ``{id}`` alone, as Genesys' stream does. Tests wait for frames with a timeout
(:meth:`WmGuest.expect`, :meth:`ChatStream.expect`), never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from tests.support import contract
from tests.support.emulator_server import WEBMESSAGING_DEPLOYMENT

Frame = dict[str, Any]
TIMEOUT_S = 5.0
ORIGIN = "http://localhost:3000"


def check_webmessaging_frame(frame: Frame) -> None:
    """A server frame as the contract has it. Class ``string`` frames carry a bare text body (as real
    frames do; the contract's BaseMessage says object), so their envelope is checked without it."""
    if frame["class"] == "string":
        assert isinstance(frame["body"], str) and frame["code"] != 200, frame
        contract.validate_definition({**frame, "body": {}}, "BaseMessage", contract=contract.WEBMESSAGING)
        return
    contract.validate_definition(frame, "BaseMessage", contract=contract.WEBMESSAGING)
    contract.validate_definition(frame["body"], frame["class"], contract=contract.WEBMESSAGING)


def check_stream_frame(frame: Frame) -> None:
    if frame["topicName"] in ("channel.metadata", "v2.system.socket_closing"):
        assert set(frame) == {"topicName", "eventBody"}, frame
        return
    assert frame["version"] == "2" and set(frame["metadata"]) == {"CorrelationId", "type"}, frame
    body, kind = frame["eventBody"], frame["metadata"]["type"]
    # As on Genesys, a frame names members and the conversation by id alone (no displayName, role or
    # selfUri); the rest of a line or typing body is the contract's. Its WebChatMemberInfo requires a
    # role, which only GET .../members/{id} tells, so the check lends the sender one.
    assert set(body["conversation"]) == {"id"}, body
    if kind in ("message", "typing-indicator"):
        assert set(body["sender"]) == {"id"}, body
        definition = "WebChatMessage" if kind == "message" else "WebChatTyping"
        contract.validate_definition({**body, "sender": {**body["sender"], "role": "AGENT"}}, definition)
    elif kind == "member-change":
        assert set(body["member"]) == {"id", "state"}, body


class _Socket:
    def __init__(self, ws: ClientConnection, check: Callable[[Frame], None]) -> None:
        self.ws = ws
        self._check = check
        self.frames: list[Frame] = []  # everything received, in order

    async def recv(self, timeout: float = TIMEOUT_S) -> Frame:
        frame: Frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self._check(frame)
        self.frames.append(frame)
        return frame

    async def expect(self, match: Callable[[Frame], bool], timeout: float = TIMEOUT_S) -> Frame:
        """The next frame that matches, skipping others (they stay in ``frames``)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if match(frame):
                    return frame

    async def closed(self, timeout: float = TIMEOUT_S) -> int | None:
        """Wait for the server to close the socket: its close code (1006: no close frame, a TCP drop)."""
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        return self.ws.close_code


class WmGuest(_Socket):
    """A Web Messaging guest socket with its session token."""

    def __init__(self, ws: ClientConnection, token: str, deployment_id: str) -> None:
        super().__init__(ws, check_webmessaging_frame)
        self.token = token
        self.deployment_id = deployment_id

    async def send(self, action: str, **fields: Any) -> str:
        tracing_id = str(uuid.uuid4())
        await self.ws.send(json.dumps({"action": action, "token": self.token, "tracingId": tracing_id, **fields}))
        return tracing_id

    async def configure(self, **fields: Any) -> Frame:
        tracing_id = await self.send("configureSession", deploymentId=self.deployment_id, **fields)
        return await self.expect(lambda f: f.get("tracingId") == tracing_id)

    async def say(self, text: str, **fields: Any) -> str:
        return await self.send(
            "onMessage", time="2024-01-01T00:00:00.000Z", message={"type": "Text", "text": text}, **fields
        )

    async def event(self, event: dict[str, Any], **fields: Any) -> str:
        return await self.send(
            "onMessage", time="2024-01-01T00:00:00.000Z", message={"type": "Event", "events": [event]}, **fields
        )

    async def answer(self, tracing_id: str, timeout: float = TIMEOUT_S) -> Frame:
        return await self.expect(lambda f: f.get("tracingId") == tracing_id, timeout)

    async def outbound(self, timeout: float = TIMEOUT_S, *, text: bool = True) -> Frame:
        """The next Outbound StructuredMessage (a Text one unless ``text`` is False)."""
        return await self.expect(
            lambda f: (
                f["class"] == "StructuredMessage"
                and f["body"].get("direction") == "Outbound"
                and (not text or f["body"]["type"] == "Text")
            ),
            timeout,
        )


def ws_base(http_base: str) -> str:
    return http_base.replace("http://", "ws://", 1)


@asynccontextmanager
async def wm_guest(
    http_base: str,
    *,
    token: str | None = None,
    deployment_id: str = WEBMESSAGING_DEPLOYMENT,
    origin: str | None = ORIGIN,
) -> AsyncIterator[WmGuest]:
    url = f"{ws_base(http_base)}/v1?deploymentId={deployment_id}&application=parley-tests-1.0"
    headers = {"Origin": origin} if origin else None
    async with connect(url, additional_headers=headers, open_timeout=TIMEOUT_S) as ws:
        yield WmGuest(ws, token or str(uuid.uuid4()), deployment_id)


class ChatStream(_Socket):
    """A Guest Chat event stream."""

    def __init__(self, ws: ClientConnection) -> None:
        super().__init__(ws, check_stream_frame)

    async def member(self, member_id: str, state: str) -> Frame:
        return await self.expect(
            lambda f: (
                f["topicName"].endswith(".members") and f["eventBody"]["member"] == {"id": member_id, "state": state}
            )
        )

    async def message(self, *, body_type: str = "standard", sender: str | None = None) -> Frame:
        return await self.expect(
            lambda f: (
                f.get("metadata", {}).get("type") == "message"
                and f["eventBody"]["bodyType"] == body_type
                and (sender is None or f["eventBody"]["sender"]["id"] == sender)
            )
        )


@asynccontextmanager
async def chat_stream(event_stream_uri: str) -> AsyncIterator[ChatStream]:
    async with connect(event_stream_uri, open_timeout=TIMEOUT_S) as ws:
        yield ChatStream(ws)


async def refused_status(url: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of a refused upgrade (fails if the upgrade succeeds)."""
    try:
        async with connect(url, additional_headers=headers, open_timeout=TIMEOUT_S):
            pass
    except websockets.InvalidStatus as exc:
        return exc.response.status_code
    raise AssertionError("the upgrade was accepted")
