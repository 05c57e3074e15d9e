"""Parley's own guest protocol machines (guest/) against the emulator's sockets, over loopback.

A minimal I/O loop (this file) carries out the machines' intents - open the socket, send its frames,
make its REST calls - and feeds back what comes in, the way the guest worker does. The point is the
contract between the two halves: the emulator's frames are what the machines were written for.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from emulator.fixtures import SEED
from genesys.errors import GenesysError
from genesys.wire import GuestJwt, build_request
from guest.events import (
    AgentJoined,
    AgentMessage,
    CloseSocket,
    ConnectionClosed,
    ConversationDisconnected,
    Ended,
    GuestEvent,
    GuestMessageConfirmed,
    OpenSocket,
    SessionStarted,
)
from guest.guestchat import ChatRequest, GuestChatConfig, GuestChatSession
from guest.webmessaging import FetchMessageHistory, WebMessagingConfig, WebMessagingSession
from harness.emulator_server import FAST_AGENT_ENV, EmulatorServer, running_emulator
from tests.support.emulator_server import GUESTCHAT_DEPLOYMENT, QUEUE, WEBMESSAGING_DEPLOYMENT
from tests.support.ws_client import ORIGIN, ws_base

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with running_emulator(FAST_AGENT_ENV) as running:
        yield running


class Driver:
    """Runs one machine: its socket, its REST calls, its timer."""

    def __init__(
        self, machine: WebMessagingSession | GuestChatSession, http: httpx.AsyncClient, socket_url: str | None = None
    ) -> None:
        self.machine = machine
        self.http = http
        self.socket_url = socket_url  # Web Messaging; a Guest Chat OpenSocket names its own
        self.events: list[GuestEvent] = []
        self._ws: ClientConnection | None = None
        self._inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def until(self, done: Callable[[list[GuestEvent]], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            await self.pump()
            while not done(self.events):
                deadline = self.machine.next_deadline()
                wait = None if deadline is None else max(0.0, deadline - time.time())
                try:
                    frame = await asyncio.wait_for(self._inbox.get(), wait)
                except TimeoutError:
                    self.machine.timer(time.time())
                else:
                    if frame is None:
                        self.machine.connection_lost(time.time())
                    else:
                        self.machine.receive_text(frame, time.time())
                await self.pump()

    async def pump(self) -> None:
        machine = self.machine
        while True:
            # The Guest Chat stream only listens: its guest talks over REST.
            frames = machine.data_to_send() if isinstance(machine, WebMessagingSession) and self._ws else []
            for frame in frames:
                assert self._ws is not None
                await self._ws.send(frame)
            intents = machine.intents_to_run()
            self.events.extend(machine.events_received())
            if not intents and not frames:
                return
            for intent in intents:
                await self._run(intent)

    async def _run(self, intent: object) -> None:
        now = time.time()
        if isinstance(intent, OpenSocket):
            url = intent.uri.get_secret_value() if intent.uri else self.socket_url
            assert url is not None
            headers = {"Origin": ORIGIN} if intent.uri is None else None
            self._ws = await connect(url, additional_headers=headers)
            self._reader = asyncio.create_task(self._read(self._ws))
            self.machine.connection_made(now)
        elif isinstance(intent, CloseSocket):
            if self._ws is not None:
                await self._ws.close(intent.code, intent.reason)
        elif isinstance(intent, FetchMessageHistory | ChatRequest):
            # The genesys.operations operation the intent names, as the guest worker's client sends it.
            op = intent.operation
            bearer = op.auth.jwt if isinstance(op.auth, GuestJwt) else None
            response = await self.http.send(build_request(op, str(self.http.base_url).rstrip("/"), bearer))
            self._answer(intent.request_id, op.method, op.path, response)

    def _answer(self, request_id: str, method: str, path: str, response: httpx.Response) -> None:
        machine, now = self.machine, time.time()
        if response.is_success:
            machine.rest_succeeded(request_id, now, response.content or None)
        else:
            body = response.json()
            error = GenesysError(
                response.status_code, body.get("code", ""), body.get("message", ""), method=method, path=path
            )
            machine.rest_failed(request_id, now, error)

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                self._inbox.put_nowait(str(frame))
        finally:
            self._inbox.put_nowait(None)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def of(kind: type[GuestEvent], events: list[GuestEvent]) -> list[GuestEvent]:
    return [e for e in events if isinstance(e, kind)]


async def test_the_web_messaging_machine_talks_to_the_emulator(server: EmulatorServer, http: httpx.AsyncClient) -> None:
    config = WebMessagingConfig(
        deployment_id=WEBMESSAGING_DEPLOYMENT, token=str(uuid.uuid4()), auto_start=True, reorder_window=0.05,
        origin=ORIGIN,
    )
    machine = WebMessagingSession(config)
    url = f"{ws_base(server.base_url)}/v1?deploymentId={WEBMESSAGING_DEPLOYMENT}&application=parley-1.0"
    driver = Driver(machine, http, url)
    try:
        machine.start(time.time())
        await driver.until(lambda ev: bool(of(SessionStarted, ev)))
        [started] = of(SessionStarted, driver.events)
        assert isinstance(started, SessionStarted) and started.new_session
        await driver.until(lambda ev: bool(of(AgentMessage, ev)))  # the greeting, after the autoStart Join
        tracing_id = machine.send_text("Where is my parcel?", time.time())
        await driver.until(lambda ev: len(of(AgentMessage, ev)) == 2)
        confirmed = of(GuestMessageConfirmed, driver.events)
        assert [c.tracing_id for c in confirmed if isinstance(c, GuestMessageConfirmed)] == [tracing_id]
        texts = [m.text for m in of(AgentMessage, driver.events) if isinstance(m, AgentMessage)]
        assert texts == ["Hello, my name is Emma Agent. How can I help you?", "You said: Where is my parcel?"]
        machine.send_text("bye", time.time())
        await driver.until(lambda ev: bool(of(ConversationDisconnected, ev)))
        [ended] = of(ConversationDisconnected, driver.events)
        assert isinstance(ended, ConversationDisconnected) and ended.read_only
        machine.end(time.time())
        await driver.until(lambda ev: bool(of(ConnectionClosed, ev)))
    finally:
        await driver.close()


async def test_the_guest_chat_machine_talks_to_the_emulator(server: EmulatorServer, http: httpx.AsyncClient) -> None:
    config = GuestChatConfig(
        organization_id=SEED.organization_id,
        deployment_id=GUESTCHAT_DEPLOYMENT,
        queue_name=QUEUE.name,
        display_name="Ada",
        reorder_window=0.05,
    )
    machine = GuestChatSession(config)
    driver = Driver(machine, http)
    try:
        machine.start(time.time())
        await driver.until(lambda ev: bool(of(AgentJoined, ev)))
        machine.send_text("Where is my parcel?", time.time())
        await driver.until(lambda ev: "You said: Where is my parcel?" in [getattr(m, "text", "") for m in ev])
        machine.end(time.time())
        await driver.until(lambda ev: bool(of(Ended, ev)))
        [ended] = of(Ended, driver.events)
        assert isinstance(ended, Ended) and ended.by == "guest"
    finally:
        await driver.close()
