"""The guest worker's websocket: python-websockets' asyncio client connection without two costs that
it pays per socket, and that add up when one worker holds ten thousand sockets.

* **Delivery.** Each message goes to the session's callback as the protocol parses it
  (:meth:`GuestSocket.start`). websockets would queue it in an Assembler for a reader task, which
  wakes once per frame only to put the frame on the session's queue. The session's queue is the one
  buffer here, as it already was: the reader never waited on it.
* **Keepalive.** Protocol pings come from one timer for all of a worker's sockets (:class:`Keepalive`).
  websockets runs a keepalive task per socket, which wakes twice per ping (its sleep, then the pong
  under a timeout): at a 17 s interval, about 1,200 task wake-ups a second for 10,000 idle sockets.

What websockets does for a failed socket is kept: text that is not UTF-8 fails the connection with
1007, and a ping unanswered past the timeout fails it with 1011, "keepalive ping timeout". Either is
logged (without the socket's address or data) and counted (``parley_guest_socket_failures_total``);
the session hears of it as of any lost socket.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.frames import DATA_OPCODES, CloseCode, Frame, Opcode
from websockets.protocol import State

from parley import metrics

# The sockets' one logger, handed to websockets too (workers.guest.network). websockets logs frames at
# DEBUG; they hold customer text, so it never goes below INFO.
log = logging.getLogger("parley.guest.websocket")
log.setLevel(logging.INFO)

MessageSink = Callable[[str | bytes], None]
ClosedSink = Callable[[], None]

BEAT_SLACK_S = 0.25
"""Sockets whose ping falls due within this much of the first share its timer callback."""


class GuestSocket(ClientConnection):
    """A client connection that hands messages to a callback and is pinged by a :class:`Keepalive`.

    Messages that arrive between the handshake and :meth:`start` (the session learns of the socket
    through its queue) are kept and handed over first, so the session sees the socket open before any
    of its messages, as it did when a reader task started at that point."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._early: list[str | bytes] | None = []
        self._on_message: MessageSink | None = None
        self._on_closed: ClosedSink | None = None
        self._fragments: list[bytes] = []
        self._text = False

    def start(self, on_message: MessageSink, on_closed: ClosedSink) -> None:
        """From now on every message goes to ``on_message``, in order; ``on_closed`` is called once,
        when the connection is gone (at once if it already is)."""
        early, self._early = self._early or [], None
        self._on_message, self._on_closed = on_message, on_closed
        for message in early:
            on_message(message)
        if self.connection_lost_waiter.done():
            on_closed()

    # --- websockets' callbacks -------------------------------------------------------------------------

    def process_event(self, event: Any) -> None:
        if self.response is None or not isinstance(event, Frame):
            super().process_event(event)  # the handshake's answer
            return
        opcode = event.opcode
        if opcode is Opcode.PONG:
            self.acknowledge_pings(bytes(event.data))
        elif opcode in DATA_OPCODES:
            self._data_frame(event)
        # A ping is answered by the protocol itself; a close ends in connection_lost.

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._on_closed is not None:
            self._on_closed()

    # --- keepalive (called by Keepalive) --------------------------------------------------------------

    def keepalive_ping(self) -> asyncio.Future[float] | None:
        """Send a ping now, without waiting: the future completes at its pong. None if the socket is
        no longer open (the keepalive forgets it)."""
        if self.protocol.state is not State.OPEN:
            return None
        data = struct.pack("!I", random.getrandbits(32))
        while data in self.pending_pings:
            data = struct.pack("!I", random.getrandbits(32))
        pong: asyncio.Future[float] = self.loop.create_future()
        self.pending_pings[data] = (pong, self.loop.time())
        self.protocol.send_ping(data)
        self._write()
        return pong

    def keepalive_timed_out(self) -> None:
        if self.protocol.state is State.OPEN:
            log.warning("guest socket: keepalive ping unanswered; failing the socket (1011)")
            metrics.guest_socket_failures.labels(reason="keepalive_timeout").inc()
            self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    # --- internals --------------------------------------------------------------------------------------

    def _data_frame(self, frame: Frame) -> None:
        if frame.opcode is not Opcode.CONT:
            self._text = frame.opcode is Opcode.TEXT
            self._fragments.clear()
        if not frame.fin:
            self._fragments.append(bytes(frame.data))  # the protocol caps the whole message at max_size
            return
        data = bytes(frame.data)
        if self._fragments:
            data = b"".join((*self._fragments, data))
            self._fragments.clear()
        message: str | bytes = data
        if self._text:
            try:
                message = data.decode()
            except UnicodeDecodeError as exc:
                log.warning("guest socket: a text message is not UTF-8; failing the socket (1007)")
                metrics.guest_socket_failures.labels(reason="invalid_text").inc()
                self._fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                return
        if self._early is not None:
            self._early.append(message)
        elif self._on_message is not None:
            self._on_message(message)

    def _fail(self, code: CloseCode, reason: str) -> None:
        """Fail the connection as websockets does (a close frame with ``code``), without waiting for the
        peer's answer: the transport closes once the frame is written, and connection_lost follows."""
        self.protocol.fail(code, reason)
        if self._write():
            self.transport.close()

    def _write(self) -> bool:
        try:
            self.send_data()
        except Exception:  # OSError, or uvloop's RuntimeError on a closing transport: the socket is gone
            self.transport.abort()
            return False
        return True


class Keepalive:
    """Protocol pings for every socket of a worker, from one timer on the event loop.

    Every socket is pinged ``interval_s`` after it was watched, then every ``interval_s``; a ping
    without its pong after ``timeout_s`` fails the socket. Both intervals are the same for all
    sockets, so each queue stays in time order and a beat only looks at the sockets that are due."""

    def __init__(self, interval_s: float, timeout_s: float | None) -> None:
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._due: deque[tuple[float, GuestSocket]] = deque()
        self._waiting: deque[tuple[float, GuestSocket, asyncio.Future[float]]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._due)

    def watch(self, sock: GuestSocket) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests run one per test): the old one's sockets are gone
            self._due.clear()
            self._waiting.clear()
            self._loop, self._timer = loop, None
        self._due.append((loop.time() + self.interval_s, sock))
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None or self._loop is None:
            return
        heads = [queue[0][0] for queue in (self._due, self._waiting) if queue]
        if heads:
            # A context of its own: the timer would otherwise run in the context of whichever session's
            # task armed it, and its log lines would name that session.
            self._timer = self._loop.call_at(min(heads) + BEAT_SLACK_S, self._beat, context=contextvars.Context())

    def _beat(self) -> None:
        assert self._loop is not None
        self._timer = None
        now = self._loop.time()
        while self._waiting and self._waiting[0][0] <= now:
            _, sock, pong = self._waiting.popleft()
            if not pong.done():
                sock.keepalive_timed_out()
        while self._due and self._due[0][0] <= now:
            _, sock = self._due.popleft()
            pong = sock.keepalive_ping()
            if pong is None:
                continue
            self._due.append((now + self.interval_s, sock))
            if self.timeout_s is not None:
                self._waiting.append((now + self.timeout_s, sock, pong))
        self._arm()
