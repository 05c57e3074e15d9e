"""One Redis connection carrying many callers' commands at once (a multiplexed connection).

Redis answers the commands sent on a connection in the order they were sent. So callers need not take
turns on pooled connections: each writes its commands as soon as they are ready and queues a future,
and the replies, parsed as they arrive, go in order to the futures at the head of the queue. No call
waits for a pooled connection to come free, and none pays a pool checkout, a pipeline object or a
timeout of its own. Measured with ``bench/bench_guest.py`` at ten thousand sessions and 500 messages a
second, the guest worker's relay p99 went from 83 to 48 ms when its scripts moved here from a
64-connection pool.

redis-py opens the connection (TCP, TLS or unix socket, AUTH, SELECT, HELLO: whatever the URL and
redis-py make of them); then the connection's transport is handed to :class:`_Replies`, a plain asyncio
protocol. A write is one ``transport.write`` in the caller's turn, and the replies are parsed by hiredis
in ``data_received`` and handed to their futures there: no reader task wakes per reply, and no stream
reader, timeout context or response callback runs per command (redis-py's read path was a sixth of
the guest worker's CPU under traffic). Error replies are redis-py's exception classes, from its parser;
one the connection class says breaks the connection (``breaking_error``: a demoted Sentinel master, see
:mod:`parley.connections`) fails the link as a read would have.

Failure: when the connection breaks, every call waiting on it fails with the error (its commands may or
may not have run, as with any connection error) and the connection is dropped; the next call opens a
new one. A dropped connection is never reconnected in place, because replies to commands written on it
after the break could then be read by nobody or, worse, by the wrong caller. A watchdog applies the
connection's socket timeout to the replies: calls waiting with no reply for that long fail the link.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
from redis._parsers import BaseParser
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _Waiter:
    """A call written on the link: how many replies it wants, those read so far, who wants them."""

    __slots__ = ("count", "future", "replies")

    def __init__(self, count: int, future: asyncio.Future[list[Any]]) -> None:
        self.count = count
        self.replies: list[Any] = []
        self.future = future


class _Link:
    """One opened connection, the calls written on it and still unanswered, and its reply parser."""

    def __init__(self, conn: AbstractConnection, transport: asyncio.BaseTransport,
                 reply_timeout_s: float | None) -> None:
        self.conn = conn
        self.writer = conn._writer
        self.transport = transport
        self.taken_over = False  # the transport is this link's (see RedisMux._open)
        self.reply_timeout_s = reply_timeout_s
        encoder = conn.encoder
        decoding = {"encoding": encoder.encoding, "errors": encoder.encoding_errors} if encoder.decode_responses else {}
        self.parser = hiredis.Reader(protocolError=InvalidResponse, replyError=BaseParser.parse_error, **decoding)
        # What an error reply may mean for the whole connection (parley.connections: a demoted Sentinel master).
        self.breaking_error: Callable[[ResponseError], BaseException | None] | None = getattr(
            conn, "breaking_error", None)
        self.waiting: deque[_Waiter] = deque()
        self.broken: BaseException | None = None
        self.tasks: list[asyncio.Task[None]] = []  # the watchdog; the reader where the transport is not taken over
        self.progress_at = 0.0  # loop time of the last reply, or of the first call after a quiet spell

    def submit(self, packed: list[bytes], count: int) -> asyncio.Future[list[Any]]:
        """Write one call's packed commands; the future gets their ``count`` replies."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if self.broken is not None:
            future.set_exception(self.broken)
            return future
        if not self.waiting:
            self.progress_at = loop.time()
        # Queued and written in the same turn: the queue's order is the wire's.
        self.waiting.append(_Waiter(count, future))
        if self.taken_over:
            # write(), not writelines(): uvloop tries a write() on the socket at once, while it defers
            # writelines() to after its next poll, which can wait for an unrelated timer (p99 2-3 ms).
            self.transport.write(packed[0] if len(packed) == 1 else b"".join(packed))  # type: ignore[attr-defined]
        else:
            self.writer.writelines(packed)
        return future

    def received(self, data: bytes) -> None:
        """Bytes from Redis: every whole reply in them goes to its caller."""
        parser = self.parser
        parser.feed(data)
        while self.broken is None:
            try:
                reply = parser.gets()
            except InvalidResponse as exc:
                self.fail(exc)
                return
            if reply is False:
                return
            self.deliver(reply)

    def deliver(self, reply: Any) -> None:
        if isinstance(reply, ResponseError) and self.breaking_error is not None:
            lost = self.breaking_error(reply)
            if lost is not None:
                self.fail(lost)
                return
        if not self.waiting:
            self.fail(InvalidResponse("a reply nobody asked for"))
            return
        head = self.waiting[0]
        head.replies.append(reply)
        if len(head.replies) == head.count:
            self.waiting.popleft()
            if not head.future.done():  # a cancelled caller's replies are read and dropped
                head.future.set_result(head.replies)
        self.progress_at = asyncio.get_running_loop().time()

    def fail(self, error: BaseException) -> None:
        """The link is done: everything waiting on it gets ``error``, and the socket is closed."""
        if self.broken is None:
            self.broken = error
        while self.waiting:
            future = self.waiting.popleft().future
            if not future.done():
                future.set_exception(error)
        self.writer.close()
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()

    @property
    def usable(self) -> bool:
        return self.broken is None and not self.transport.is_closing()


class _Replies(asyncio.Protocol):
    """The opened connection's protocol: bytes in go to the link's parser, a lost socket fails it."""

    def __init__(self, link: _Link) -> None:
        self.link = link

    def data_received(self, data: bytes) -> None:
        self.link.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.fail(RedisConnectionError(f"the connection was lost ({exc!r})" if exc else "the connection was lost"))


class RedisMux:
    def __init__(self, make_connection: Callable[[], AbstractConnection]) -> None:
        self._make_connection = make_connection
        self._link: _Link | None = None
        self._opening: asyncio.Future[_Link] | None = None
        self._closed = False

    async def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` (each a tuple of arguments, packed as the connection class packs); their
        replies in order, an error reply as an exception object
        (like a pipeline with ``raise_on_error=False``). Raises when the connection fails."""
        link = await self._ready_link()
        return await self._submit(link, commands)

    def submit(self, commands: Sequence[Sequence[Any]]) -> asyncio.Future[list[Any]]:
        """As :meth:`execute`, but written now when the connection is open (no task, no turn of the
        loop): a future of the replies. While the connection opens, a task waits for it."""
        link = self._link
        if link is not None and link.usable:
            return self._submit(link, commands)
        return asyncio.ensure_future(self.execute(commands))

    def _submit(self, link: _Link, commands: Sequence[Sequence[Any]]) -> asyncio.Future[list[Any]]:
        packed = link.conn.pack_commands(commands)  # a bad argument raises here, before anything is queued
        return link.submit(packed, len(commands))

    async def aclose(self) -> None:
        self._closed = True
        link, self._link = self._link, None
        if link is not None:
            await self._shut(link, RedisConnectionError("the connection was closed"))

    async def _ready_link(self) -> _Link:
        link = self._link
        if link is not None and link.usable:
            return link
        if link is not None:
            self._drop(link, link.broken or RedisConnectionError("the connection was lost"))
        if self._closed:
            raise RedisConnectionError("the connection was closed")
        if self._opening is None or self._opening.done():
            self._opening = asyncio.ensure_future(self._open())
        opening = self._opening
        try:
            return await asyncio.shield(opening)
        finally:
            if self._opening is opening and opening.done():
                self._opening = None

    async def _open(self) -> _Link:
        conn = self._make_connection()
        await conn.connect()
        transport = conn._writer.transport if conn._writer is not None else None
        if transport is None or transport.is_closing():
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            raise RedisConnectionError("the connection closed as it opened")
        link = _Link(conn, transport, conn.socket_timeout)
        if hasattr(transport, "set_protocol"):  # asyncio's and uvloop's transports, TLS ones too
            transport.set_protocol(_Replies(link))
            link.taken_over = True
        else:  # a transport that cannot be taken over (fakeredis in unit tests): redis-py reads
            link.tasks.append(asyncio.create_task(self._read(link), name="redis-mux-reader"))
        if link.reply_timeout_s:
            link.tasks.append(asyncio.create_task(self._watch(link), name="redis-mux-watchdog"))
        self._link = link
        return link

    @staticmethod
    async def _read(link: _Link) -> None:
        conn = link.conn
        conn.socket_timeout = None  # the watchdog applies it to the replies
        try:
            while link.broken is None:
                try:
                    reply = await conn.read_response(disconnect_on_error=False)
                except ResponseError as exc:
                    reply = exc  # an error reply answers its own command; the connection is fine
                link.deliver(reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            link.fail(exc)

    async def _watch(self, link: _Link) -> None:
        """Fail the link when calls wait and Redis has said nothing for the reply timeout (a server
        that went away without closing the socket, or one stuck)."""
        assert link.reply_timeout_s
        loop = asyncio.get_running_loop()
        while link.broken is None:
            await asyncio.sleep(link.reply_timeout_s / 4)
            if link.waiting and loop.time() - link.progress_at > link.reply_timeout_s:
                self._drop(link, RedisTimeoutError(f"no reply from Redis in {link.reply_timeout_s:g} s"))

    def _drop(self, link: _Link, error: BaseException) -> None:
        """Fail the link's calls and close it (callers must not wait on a dead socket)."""
        if self._link is link:
            self._link = None
        link.fail(error)

    @staticmethod
    async def _shut(link: _Link, error: BaseException) -> None:
        link.fail(error)
        tasks = [task for task in link.tasks if not task.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
