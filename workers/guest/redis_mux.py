"""One Redis connection carrying many callers' commands at once (a multiplexed connection).

Redis answers the commands sent on a connection in the order they were sent. So callers need not take
turns on pooled connections: each writes its commands as soon as they are ready and queues a future,
and one reader task hands every reply, in order, to the future at the head of the queue. No call waits
for a pooled connection to come free, and none pays a pool checkout, a pipeline object or a timeout of
its own. Measured with ``bench/bench_guest.py`` at ten thousand sessions and 500 messages a second, the
guest worker's relay p99 went from 83 to 48 ms when its scripts moved here from a 64-connection pool.

Only redis-py's public connection API is used (``connect``, ``send_packed_command``, ``read_response``,
``disconnect``, the ``socket_timeout`` attribute), so TLS, unix sockets, AUTH, SELECT and hiredis
parsing are whatever the URL and redis-py make of them.

Failure: when the connection breaks, every call waiting on it fails with the error (its commands may or
may not have run, as with any connection error) and the connection is dropped; the next call opens a
new one. A dropped connection is never reconnected in place, because replies to commands written on it
after the break could then be read by nobody or, worse, by the wrong caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Waiter = tuple[int, "asyncio.Future[list[Any]]"]  # (how many replies, who wants them)


class _Link:
    """One opened connection, the calls written on it and still unanswered, and its reader."""

    def __init__(self, conn: AbstractConnection, reply_timeout_s: float | None) -> None:
        self.conn = conn
        self.reply_timeout_s = reply_timeout_s
        self.waiting: deque[Waiter] = deque()
        self.wakeup: asyncio.Event = asyncio.Event()
        self.broken: BaseException | None = None
        self.tasks: list[asyncio.Task[None]] = []  # the reader, and the watchdog if there is a timeout
        self.progress_at = 0.0  # loop time of the last reply, or of the first call after a quiet spell

    def fail(self, error: BaseException) -> None:
        """The link is done: everything waiting on it gets ``error``."""
        if self.broken is None:
            self.broken = error
        while self.waiting:
            _count, future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        self.wakeup.set()


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
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        # Queued before writing, and nothing is awaited in between: the queue's order is the wire's.
        if not link.waiting:
            link.progress_at = asyncio.get_running_loop().time()
        link.waiting.append((len(commands), future))
        link.wakeup.set()
        try:
            await link.conn.send_packed_command(link.conn.pack_commands(commands), check_health=False)
        except Exception as exc:
            # The reader may have found the socket dead first (redis-py then drops its streams under the
            # writer): either way the link is gone, and this call fails with the link's error.
            self._drop(link, exc if isinstance(exc, RedisError) else RedisConnectionError(f"write failed: {exc!r}"))
        except BaseException:
            # Cancelled mid-write (redis-py closes the socket): the others waiting on the link get a
            # connection error, not this caller's cancellation.
            self._drop(link, RedisConnectionError("a write was interrupted"))
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: this caller raises its cancellation instead
            raise
        return await future

    async def aclose(self) -> None:
        self._closed = True
        link, self._link = self._link, None
        if link is not None:
            await self._shut(link, RedisConnectionError("the connection was closed"))

    async def _ready_link(self) -> _Link:
        link = self._link
        if link is not None and link.broken is None and link.conn.is_connected:
            return link
        if link is not None:
            self._drop(link, RedisConnectionError("the connection was lost"))
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
        # redis-py would put each write and each reply read under its own timeout (a task per write);
        # here one watchdog per connection applies the socket timeout to the replies instead.
        reply_timeout_s, conn.socket_timeout = conn.socket_timeout, None
        link = _Link(conn, reply_timeout_s)
        link.tasks.append(asyncio.create_task(self._read(link), name="redis-mux-reader"))
        if reply_timeout_s:
            link.tasks.append(asyncio.create_task(self._watch(link), name="redis-mux-watchdog"))
        self._link = link
        return link

    async def _watch(self, link: _Link) -> None:
        """Fail the link when calls wait and Redis has said nothing for the reply timeout (a server
        that went away without closing the socket, or one stuck)."""
        assert link.reply_timeout_s
        loop = asyncio.get_running_loop()
        while link.broken is None:
            await asyncio.sleep(link.reply_timeout_s / 4)
            if link.waiting and loop.time() - link.progress_at > link.reply_timeout_s:
                self._drop(link, RedisTimeoutError(f"no reply from Redis in {link.reply_timeout_s:g} s"))

    async def _read(self, link: _Link) -> None:
        """Hand each reply to the call at the head of the queue, until the link breaks or closes."""
        conn, loop = link.conn, asyncio.get_running_loop()
        try:
            while link.broken is None:
                if not link.waiting:
                    link.wakeup.clear()
                    await link.wakeup.wait()
                    continue
                count, future = link.waiting[0]
                replies = []
                for _ in range(count):
                    replies.append(await self._reply(conn))
                    link.progress_at = loop.time()
                link.waiting.popleft()
                if not future.done():
                    future.set_result(replies)
        except asyncio.CancelledError:
            link.fail(RedisConnectionError("the connection was closed"))
            raise
        except Exception as exc:
            self._drop(link, exc)

    @staticmethod
    async def _reply(conn: AbstractConnection) -> Any:
        try:
            return await conn.read_response()
        except ResponseError as exc:
            return exc  # an error reply answers its own command; the connection is fine

    def _drop(self, link: _Link, error: BaseException) -> None:
        """Fail the link's calls and close it (in the background: callers must not wait on a dead socket)."""
        if self._link is link:
            self._link = None
        if link.broken is None:
            link.fail(error)
            task = asyncio.ensure_future(self._shut(link, error))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    @staticmethod
    async def _shut(link: _Link, error: BaseException) -> None:
        link.fail(error)
        for task in link.tasks:
            if task is not asyncio.current_task() and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        with contextlib.suppress(Exception):
            await link.conn.disconnect(nowait=True)
