"""A session's relay lane: agent events reach Redis in order without queueing behind the command path.

A session runner handles its inputs one at a time, and each command step (record the outcome, take
the next command) is a Redis round trip; with thousands of sessions each one waits many turns of a
busy event loop, and an agent message that arrived behind them waited for all of them. Relaying does
not depend on commands: exactly once comes from the dedup id written in the same script as the event
(:meth:`workers.guest.store.SessionStore.relay`), so relays get a lane of their own. Order among them
is kept here: one write at a time per session, events in the order queued, and whatever was queued
while a write was in flight goes together in the next write (still one atomic script).

A checkpoint is saved only after the events queued before it are written: an adopter resuming from it
skips what the checkpoint covers, so it must not cover an event that never reached Redis.

The lane can be held (events wait, in order) so a new session's agent events never precede its
``guest.started``, which the command path writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from parley import metrics
from schemas.events import EventBase

Relayed = list[tuple[str, EventBase]]  # (dedup id, event); '' = no dedup


class RelayLane:
    def __init__(self, write: Callable[[Relayed], Awaitable[object]],
                 save_checkpoint: Callable[[str], Awaitable[None]],
                 on_error: Callable[[Exception], None]) -> None:
        self._write = write
        self._save_checkpoint = save_checkpoint
        self._on_error = on_error
        self._pending: Relayed = []
        self._put_at: list[float] = []  # when each pending event was put: its relay latency starts there
        self._checkpoint: str | None = None
        self._held = False
        self._failed: Exception | None = None
        self._task: asyncio.Task[None] | None = None

    def put(self, events: Relayed) -> None:
        self._pending += events
        self._put_at += [time.monotonic()] * len(events)
        self._kick()

    def checkpoint(self, checkpoint: str) -> None:
        """Save ``checkpoint`` once everything queued so far is written (a later one replaces it)."""
        self._checkpoint = checkpoint
        self._kick()

    def hold(self) -> None:
        self._held = True

    def release(self) -> None:
        self._held = False
        self._kick()

    async def flush(self) -> None:
        """Release the lane and wait until everything queued is written; raises what a write raised."""
        self.release()
        while self._task is not None:
            await self._task
        if self._failed is not None:
            raise self._failed

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _kick(self) -> None:
        if self._task is None and self._failed is None and self._has_work():
            self._task = asyncio.create_task(self._run())

    def _has_work(self) -> bool:
        return not self._held and (bool(self._pending) or self._checkpoint is not None)

    async def _run(self) -> None:
        try:
            while self._has_work():
                events, self._pending = self._pending, []
                put_at, self._put_at = self._put_at, []
                checkpoint, self._checkpoint = self._checkpoint, None
                if events:
                    await self._write(events)
                    written = time.monotonic()
                    for at in put_at:
                        metrics.guest_relay_latency.observe(written - at)
                if checkpoint is not None:
                    await self._save_checkpoint(checkpoint)
        except Exception as exc:
            # The runner fails (or lets go, if fenced) as it would have had it made the write itself.
            self._failed = exc
            self._on_error(exc)
        finally:
            self._task = None
