"""Live guest websockets: one :class:`Link` per accepted socket, and the :class:`LinkRegistry`.

A link owns the outgoing side of its socket. Frames are queued (from any thread: ledger listeners run
wherever the state changed) and one writer task writes them in order, so a frame and the close that
follows it (a ConnectionClosedEvent, then the close) cannot pass each other. The admin switches act
here: drop a socket abruptly (its TCP connection is aborted, the client sees 1006) or with a close
code, and reorder or duplicate the next N frames a socket receives.

The registry indexes links by Web Messaging session and by Guest Chat conversation; a session's
links are kept in the order they configured, so the oldest is the one a 4th connection evicts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from starlette.websockets import WebSocket, WebSocketDisconnect

log = logging.getLogger("emulator.ws")

Protocol = Literal["webmessaging", "guestchat"]
ShapeMode = Literal["reorder", "duplicate"]

# Where EmulatorApp leaves the server's own ``send`` in a websocket scope: Starlette wraps ``send``,
# and only the server's bound method leads to the transport an abrupt drop must abort.
RAW_SEND_KEY = "emulator.raw_send"
# Close code of an abrupt drop where there is no transport to abort (an in-process test client).
ABNORMAL_CLOSURE = 1006


@dataclass(frozen=True)
class _Frame:
    text: str
    shapeable: bool


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str
    abrupt: bool = False


class Link:
    """One accepted guest socket. Create it inside the socket's task (it binds the running loop)."""

    def __init__(self, protocol: Protocol, websocket: WebSocket, opened_at: datetime) -> None:
        self.id = str(uuid.uuid4())
        self.protocol: Protocol = protocol
        self.opened_at = opened_at
        self.session_id: str | None = None
        self.conversation_id: str | None = None
        self.closing = False
        self._websocket = websocket
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._queue: asyncio.Queue[_Frame | _Close] = asyncio.Queue()
        # Shaping of the next N shapeable frames (admin switch).
        self._mode: ShapeMode | None = None
        self._remaining = 0
        self._hold_s = 1.0
        self._held: list[str] = []
        self._held_since = 0.0

    # --- called from anywhere ---------------------------------------------------------------------
    def send(self, text: str, *, shapeable: bool = False) -> None:
        """Queue a frame. ``shapeable`` frames (unsolicited chat content) are the ones the reorder and
        duplicate switches act on; answers to requests never are."""
        if not self.closing:
            self._call(self._queue.put_nowait, _Frame(text, shapeable))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket after the frames already queued."""
        if not self.closing:
            self.closing = True
            self._call(self._queue.put_nowait, _Close(code, reason))

    def abort(self) -> None:
        """Drop the connection after the frames already queued, without a close frame (a TCP drop)."""
        if not self.closing:
            self.closing = True
            self._call(self._queue.put_nowait, _Close(ABNORMAL_CLOSURE, "", abrupt=True))

    def shape(self, mode: ShapeMode, frames: int, hold_s: float) -> None:
        """Reorder (hold, then release in reverse order once ``frames`` are held or ``hold_s`` has
        passed) or duplicate the next ``frames`` shapeable frames."""

        def apply() -> None:
            self._mode, self._remaining, self._hold_s = mode, frames, hold_s

        self._call(apply)

    def _call(self, fn: Callable[..., object], *args: object) -> None:
        if threading.get_ident() == self._thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    # --- the socket's task ------------------------------------------------------------------------
    async def run(
        self, on_text: Callable[[str], Awaitable[None]], background: Iterable[Coroutine[Any, Any, None]] = ()
    ) -> None:
        """Serve the socket until either side closes it: text frames go to ``on_text`` one at a time,
        queued frames are written, ``background`` coroutines (heartbeats) run alongside."""
        tasks = [asyncio.create_task(self._write()), *(asyncio.create_task(c) for c in background)]
        try:
            await self._read(on_text)
        finally:
            self.closing = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, on_text: Callable[[str], Awaitable[None]]) -> None:
        while True:
            message = await self._websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode("utf-8", "replace")
            await on_text(text)

    async def _write(self) -> None:
        try:
            while True:
                timeout = None
                if self._held:
                    timeout = max(0.0, self._held_since + self._hold_s - self._loop.time())
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    await self._release_held()
                    continue
                if isinstance(item, _Close):
                    await self._release_held()
                    await self._close(item)
                    return
                await self._write_frame(item)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            # The client is gone (or the socket already closed); the reader sees the disconnect.
            log.debug("guest socket write ended: %s", type(exc).__name__)

    async def _close(self, item: _Close) -> None:
        raw_send = self._websocket.scope.get(RAW_SEND_KEY)
        transport = getattr(getattr(raw_send, "__self__", None), "transport", None)
        if item.abrupt and transport is not None:
            transport.abort()  # the reader then gets the server's disconnect (1006)
        else:
            await self._websocket.close(item.code, item.reason)

    async def _write_frame(self, frame: _Frame) -> None:
        if not frame.shapeable or self._remaining <= 0:
            await self._websocket.send_text(frame.text)
            return
        self._remaining -= 1
        if self._mode == "duplicate":
            await self._websocket.send_text(frame.text)
            await self._websocket.send_text(frame.text)
            return
        if not self._held:
            self._held_since = self._loop.time()
        self._held.append(frame.text)
        if self._remaining == 0:
            await self._release_held()

    async def _release_held(self) -> None:
        held, self._held = self._held, []
        for text in reversed(held):
            await self._websocket.send_text(text)


class LinkRegistry:
    """The live links, by id, by Web Messaging session (in attach order) and by conversation."""

    def __init__(self) -> None:
        self._links: dict[str, Link] = {}
        self._by_session: dict[str, dict[str, Link]] = {}
        self._by_conversation: dict[str, dict[str, Link]] = {}
        self._lock = threading.Lock()

    def add(self, link: Link) -> None:
        with self._lock:
            self._links[link.id] = link
            if link.conversation_id:
                self._by_conversation.setdefault(link.conversation_id, {})[link.id] = link

    def remove(self, link: Link) -> None:
        with self._lock:
            self._links.pop(link.id, None)
            self._unindex(self._by_session, link.session_id, link)
            self._unindex(self._by_conversation, link.conversation_id, link)

    def attach(self, link: Link, session_id: str | None) -> None:
        """Bind a Web Messaging link to a session (None: detach it); a re-attach moves it last."""
        with self._lock:
            self._unindex(self._by_session, link.session_id, link)
            link.session_id = session_id
            if session_id is not None and link.id in self._links:
                self._by_session.setdefault(session_id, {})[link.id] = link

    def of_session(self, session_id: str) -> list[Link]:
        """The session's links, oldest attach first."""
        with self._lock:
            return list(self._by_session.get(session_id, {}).values())

    def of_conversation(self, conversation_id: str) -> list[Link]:
        with self._lock:
            return list(self._by_conversation.get(conversation_id, {}).values())

    def select(
        self,
        *,
        link_id: str | None = None,
        protocol: Protocol | None = None,
        session_id: str | None = None,
        conversation_id: str | None = None,
    ) -> list[Link]:
        """The links matching every given criterion (none given: all of them)."""
        with self._lock:
            links = list(self._links.values())
        return [
            link
            for link in links
            if (link_id is None or link.id == link_id)
            and (protocol is None or link.protocol == protocol)
            and (session_id is None or link.session_id == session_id)
            and (conversation_id is None or link.conversation_id == conversation_id)
        ]

    def close_all(self, code: int, reason: str = "") -> None:
        for link in self.select():
            link.close(code, reason)

    @staticmethod
    def _unindex(index: dict[str, dict[str, Link]], key: str | None, link: Link) -> None:
        if key is None or key not in index:
            return
        index[key].pop(link.id, None)
        if not index[key]:
            del index[key]
