"""The guest worker's websocket (workers/guest/websocket.py), through the worker's own connector, against
a hand-written server on loopback: it writes frames byte by byte as a peer may (a message before the
socket is started, fragments, text that is not UTF-8) and can stay silent to pings, which a
websockets server cannot be made to do."""

from __future__ import annotations

import asyncio
import logging
import re
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from websockets.utils import accept_key

from parley import logs
from tests.test_metrics import value
from workers.guest.network import websocket_connector
from workers.guest.settings import GuestSettings
from workers.guest.websocket import GuestSocket, Keepalive
from workers.guest.websocket import log as websocket_log

pytestmark = pytest.mark.anyio

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


@pytest.fixture(params=[pytest.param({}, id="asyncio"), pytest.param({"use_uvloop": True}, id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    """Both event loops: the guest worker runs on uvloop."""
    return "asyncio", request.param


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A server frame (unmasked), payloads under 126 bytes."""
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, len(payload)]) + payload


@dataclass
class Peer:
    """The server's side of one connection: what the client sent, frame by frame."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received: asyncio.Queue[tuple[int, bytes]] = field(default_factory=asyncio.Queue)

    async def read_frames(self, *, answer_pings: bool) -> None:
        try:
            while True:
                head = await self.reader.readexactly(2)
                opcode, length = head[0] & 0x0F, head[1] & 0x7F
                if length == 126:
                    length = struct.unpack("!H", await self.reader.readexactly(2))[0]
                mask = await self.reader.readexactly(4)
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(await self.reader.readexactly(length)))
                if opcode == PING and answer_pings:
                    self.writer.write(frame(PONG, payload))
                if opcode == CLOSE:  # answer the closing handshake as a server does, then hang up
                    self.writer.write(frame(CLOSE, payload))
                    self.writer.close()
                await self.received.put((opcode, payload))
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.received.put((-1, b""))  # the client closed the TCP connection

    async def next_of(self, opcode: int) -> bytes:
        while True:
            got, payload = await self.received.get()
            assert got != -1, "the client closed before sending the frame awaited"
            if got == opcode:
                return payload


@asynccontextmanager
async def peer_server(first_frames: bytes = b"", *, answer_pings: bool = True) -> AsyncIterator[
        tuple[str, asyncio.Queue[Peer]]]:
    """A websocket server on loopback; ``first_frames`` go in the same write as the 101 answer."""
    peers: asyncio.Queue[Peer] = asyncio.Queue()
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        match = re.search(rb"sec-websocket-key: *(\S+)", request, re.IGNORECASE)
        assert match is not None
        accept = accept_key(match.group(1).decode()).encode()
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + first_frames)
        peer = Peer(reader, writer)
        task = asyncio.ensure_future(peer.read_frames(answer_pings=answer_pings))
        tasks.add(task)
        await peers.put(peer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/v1", peers
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class Session:
    """What a session runner gets from a socket: its messages and one close."""

    messages: list[str | bytes] = field(default_factory=list)
    closes: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_message(self, message: str | bytes) -> None:
        self.messages.append(message)
        self.arrived.set()

    def on_closed(self) -> None:
        self.closes += 1
        self.closed.set()


async def open_socket(url: str, **settings: float) -> GuestSocket:
    sock = await websocket_connector(GuestSettings(**settings))(url, None)
    assert isinstance(sock, GuestSocket)
    return sock


async def test_messages_that_came_before_start_are_handed_over_first_and_in_order() -> None:
    early = frame(TEXT, b'{"n":1}') + frame(TEXT, b'{"n":2}')
    async with peer_server(early) as (url, peers):
        sock = await open_socket(url)
        peer = await peers.get()
        session = Session()
        # Both came in the handshake answer's packet, before anybody listened: start hands them over
        # at once, before it returns.
        sock.start(session.on_message, session.on_closed)
        assert session.messages == ['{"n":1}', '{"n":2}']
        peer.writer.write(frame(TEXT, b'{"n":3}'))
        while len(session.messages) < 3:
            session.arrived.clear()
            await session.arrived.wait()
        assert session.messages == ['{"n":1}', '{"n":2}', '{"n":3}']
        await sock.close()
        await session.closed.wait()
        assert session.closes == 1


async def test_websockets_logs_through_the_sockets_logger_which_never_shows_frames() -> None:
    """websockets logs each frame (customer text) at DEBUG: its logger, the sockets' own, stays at INFO."""
    async with peer_server() as (url, _peers):
        sock = await open_socket(url)
        assert sock.logger.logger is websocket_log  # type: ignore[attr-defined]  # a LoggerAdapter
        assert websocket_log.level == logging.INFO
        await sock.close()


async def test_a_fragmented_message_arrives_whole_and_binary_stays_bytes() -> None:
    async with peer_server() as (url, peers):
        sock = await open_socket(url)
        peer = await peers.get()
        session = Session()
        sock.start(session.on_message, session.on_closed)
        peer.writer.write(frame(TEXT, b'{"text":"h', fin=False) + frame(CONT, "é".encode(), fin=False)
                          + frame(PING, b"p") + frame(CONT, b'llo"}') + frame(BINARY, b"\x00\xff"))
        while len(session.messages) < 2:
            session.arrived.clear()
            await session.arrived.wait()
        assert session.messages == ['{"text":"hé' + 'llo"}', b"\x00\xff"]
        assert await peer.next_of(PONG) == b"p"  # a ping between fragments is still answered
        await sock.close()


async def test_text_that_is_not_utf8_fails_the_socket_with_1007_and_delivers_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    failures = {"reason": "invalid_text"}
    before = value("parley_guest_socket_failures_total", failures)
    async with peer_server() as (url, peers):
        sock = await open_socket(url)
        peer = await peers.get()
        session = Session()
        sock.start(session.on_message, session.on_closed)
        peer.writer.write(frame(TEXT, b'{"text":"\xff"}'))
        close = await peer.next_of(CLOSE)
        assert struct.unpack("!H", close[:2])[0] == 1007
        await session.closed.wait()
        assert session.messages == [] and session.closes == 1
    assert value("parley_guest_socket_failures_total", failures) == before + 1
    assert [r.getMessage() for r in caplog.records if r.name == "parley.guest.websocket"] == [
        "guest socket: a text message is not UTF-8; failing the socket (1007)"]


async def test_a_socket_closed_before_start_reports_its_messages_then_the_close() -> None:
    async with peer_server(frame(TEXT, b"last words")) as (url, peers):
        sock = await open_socket(url)
        peer = await peers.get()
        peer.writer.close()  # gone before the session started listening
        await sock.wait_closed()
        session = Session()
        sock.start(session.on_message, session.on_closed)
        assert session.messages == ["last words"] and session.closes == 1


async def test_keepalive_pings_an_answering_peer_and_the_socket_stays_open() -> None:
    async with peer_server() as (url, peers):
        sock = await open_socket(url, ping_interval_s=0.05, ping_timeout_s=5.0)
        peer = await peers.get()
        session = Session()
        sock.start(session.on_message, session.on_closed)
        payloads = {await peer.next_of(PING) for _ in range(3)}
        assert len(payloads) == 3  # each ping its own payload
        assert not session.closed.is_set() and len(sock.pending_pings) <= 1  # earlier pongs acknowledged
        await sock.close()


class ContextSpy(logging.Filter):
    """The log context (parley.logs) each line of the socket's logger was written in."""

    def __init__(self) -> None:
        super().__init__()
        self.contexts: list[dict[str, str]] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.contexts.append(logs.context())
        return True


async def test_keepalive_fails_a_silent_peer_with_1011_after_the_timeout() -> None:
    failures = {"reason": "keepalive_timeout"}
    before = value("parley_guest_socket_failures_total", failures)
    spy, logger = ContextSpy(), logging.getLogger("parley.guest.websocket")
    logger.addFilter(spy)

    async def opened_by_a_session(url: str) -> GuestSocket:
        logs.bind(session="session-a")  # as a session's runner task does
        return await open_socket(url, ping_interval_s=0.05, ping_timeout_s=0.2)

    async with peer_server(answer_pings=False) as (url, peers):
        sock = await asyncio.create_task(opened_by_a_session(url))
        peer = await peers.get()
        session = Session()
        sock.start(session.on_message, session.on_closed)
        await peer.next_of(PING)
        close = await peer.next_of(CLOSE)
        assert struct.unpack("!H", close[:2])[0] == 1011
        assert close[2:] == b"keepalive ping timeout"
        await session.closed.wait()
        assert session.closes == 1
    logger.removeFilter(spy)
    assert value("parley_guest_socket_failures_total", failures) == before + 1
    # One timer serves every session's sockets: its line must not name the session that armed it.
    assert spy.contexts == [{}]


class FakeSocket:
    """Stands in for GuestSocket in the keepalive's own bookkeeping."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, answers: bool = True) -> None:
        self.loop, self.answers, self.open = loop, answers, True
        self.pings: list[float] = []
        self.timed_out = asyncio.Event()
        self.pinged = asyncio.Event()

    def keepalive_ping(self) -> asyncio.Future[float] | None:
        if not self.open:
            return None
        self.pings.append(self.loop.time())
        self.pinged.set()
        pong: asyncio.Future[float] = self.loop.create_future()
        if self.answers:
            pong.set_result(0.0)
        return pong

    def keepalive_timed_out(self) -> None:
        self.timed_out.set()


async def wait_for_pings(sock: FakeSocket, count: int) -> None:
    while len(sock.pings) < count:
        sock.pinged.clear()
        await sock.pinged.wait()


async def test_keepalive_forgets_a_closed_socket_and_keeps_pinging_the_others() -> None:
    loop = asyncio.get_running_loop()
    keepalive = Keepalive(0.02, 1.0)
    gone, staying = FakeSocket(loop), FakeSocket(loop)
    for sock in (gone, staying):
        keepalive.watch(sock)  # type: ignore[arg-type]
    await wait_for_pings(gone, 1)
    gone.open = False
    await wait_for_pings(staying, 4)
    assert len(gone.pings) <= 2 and len(keepalive) == 1  # at most the beat that found it closed
    assert not staying.timed_out.is_set()
    gaps = [b - a for a, b in zip(staying.pings, staying.pings[1:], strict=False)]
    assert all(gap >= 0.02 * 0.99 for gap in gaps)  # never more often than the interval


async def test_keepalive_times_out_only_the_socket_whose_pong_never_came() -> None:
    loop = asyncio.get_running_loop()
    keepalive = Keepalive(0.02, 0.05)
    silent, answering = FakeSocket(loop, answers=False), FakeSocket(loop)
    for sock in (silent, answering):
        keepalive.watch(sock)  # type: ignore[arg-type]
    await silent.timed_out.wait()
    assert silent.pings and silent.timed_out.is_set()
    await wait_for_pings(answering, len(answering.pings) + 1)
    assert not answering.timed_out.is_set()

