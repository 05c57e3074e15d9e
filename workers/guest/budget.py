"""The guest fleet's connection budget: how fast new guest sockets open on a deployment, fleet-wide.

Genesys refuses the websocket upgrade past 1,000 new web messaging connections a minute per deployment.
A fleet restart, or one worker adopting a dead worker's ten thousand sessions, would open them all at
once. So every socket a session opens (its first, a reconnect, after adoption) first takes a slot from
its deployment's token bucket in Redis, shared by all guest workers: refilled at ``connect_per_minute``
(900 by default), holding at most ``connect_burst`` (50). Over any minute a deployment then sees at most
burst + rate new sockets (950) from the whole fleet, however many workers ask. One script takes slots
atomically, on Redis' clock (the workers' clocks may disagree).

In a worker, the sessions waiting on a deployment queue locally, and one task per deployment asks the
bucket for as many slots as there are waiters (one script call per round, not one per session) and
hands them out in order: sessions with a command waiting first (:meth:`Ticket.promote`, when a command
arrives during the wait), then the rest, each in arrival order. The order holds within a worker; across
workers the bucket goes to whoever asks. A session waits in its own connect task: its runner goes on
handling inputs, and the worker's loops and lease renewal never wait for the budget.

When Redis does not answer, waiting sessions keep waiting (asking again every second): opening anyway
could trip the limit for the whole fleet, and a worker without Redis cannot run its sessions anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from workers.guest import keys as guest_keys

log = logging.getLogger("parley.guest.budget")

RETRY_S = 1.0  # Redis did not answer: ask again after this
MIN_WAIT_S = 0.005  # never spin on a refill that is already due

# KEYS: the bucket. ARGV: slots per millisecond, capacity, slots wanted. Returns {granted, ms until the
# next slot (0 when every wanted slot was granted)}. A new (or expired) bucket starts full.
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
if now > at then
  tokens = math.min(capacity, tokens + (now - at) * rate)
  at = now
end
local granted = math.min(wanted, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate) + 60000)
local wait = 0
if granted < wanted then wait = math.max(1, math.ceil((1 - tokens) / rate)) end
return {granted, wait}
"""

ScriptCall = Callable[..., Awaitable[Any]]
"""A loaded :data:`TAKE`, called as ``script(keys=[...], args=[...])`` (redis-py's registered scripts
and :class:`workers.guest.batch.Script` both are)."""


class Ticket:
    """One session's place in its deployment's queue; done once it may open its socket."""

    __slots__ = ("_queue", "future", "urgent")

    def __init__(self, queue: _Queue, future: asyncio.Future[None], urgent: bool) -> None:
        self._queue = queue
        self.future = future
        self.urgent = urgent

    def promote(self) -> None:
        """A command arrived for the waiting session: it goes ahead of sessions with none."""
        if not self.urgent and not self.future.done():
            self.urgent = True
            self._queue.urgent.append(self)  # also still in ``rest``: granted once, skipped there when done

    async def wait(self) -> None:
        await self.future


@dataclass
class _Queue:
    """The sessions of one worker waiting on one deployment's bucket."""

    urgent: deque[Ticket] = field(default_factory=deque)
    rest: deque[Ticket] = field(default_factory=deque)
    waiting: int = 0
    pump: asyncio.Task[None] | None = None

    def next_waiting(self) -> Ticket | None:
        for line in (self.urgent, self.rest):
            while line:
                ticket = line.popleft()
                if not ticket.future.done():
                    return ticket
        return None


class ConnectionBudget:
    def __init__(self, script: ScriptCall, per_minute: float, burst: int) -> None:
        self._script = script
        self._rate_per_ms = per_minute / 60_000
        self._burst = burst
        self._queues: dict[str, _Queue] = {}

    def ticket(self, org: str, deployment_id: str, *, urgent: bool) -> Ticket:
        """A place in the deployment's queue (await :meth:`Ticket.wait`; cancel it to leave the queue)."""
        key = guest_keys.connect_budget(org, deployment_id)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue()
        ticket = Ticket(queue, asyncio.get_running_loop().create_future(), urgent)
        (queue.urgent if urgent else queue.rest).append(ticket)
        queue.waiting += 1
        ticket.future.add_done_callback(lambda f: self._left(queue) if f.cancelled() else None)
        if queue.pump is None:
            queue.pump = asyncio.create_task(self._pump(key, queue), name="guest-connect-budget")
        return ticket

    def waiting(self) -> int:
        """Sessions of this worker waiting for a slot, all deployments."""
        return sum(q.waiting for q in self._queues.values())

    async def aclose(self) -> None:
        pumps = [q.pump for q in self._queues.values() if q.pump is not None]
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)

    @staticmethod
    def _left(queue: _Queue) -> None:
        """A waiter gave up (its session stopped); a granted one was counted out when granted."""
        queue.waiting -= 1

    async def _pump(self, key: str, queue: _Queue) -> None:
        try:
            while queue.waiting > 0:
                try:
                    granted, wait_ms = await self._take(key, queue.waiting)
                except RedisError as exc:
                    log.warning("connection budget unavailable (%s); sessions keep waiting", type(exc).__name__)
                    await asyncio.sleep(RETRY_S)
                    continue
                except Exception:
                    # A bug must not leave the deployment's sessions waiting for ever on a dead pump.
                    log.exception("connection budget failed; asking again")
                    await asyncio.sleep(RETRY_S)
                    continue
                for _ in range(granted):
                    ticket = queue.next_waiting()
                    if ticket is None:
                        break  # the waiter left meanwhile: its slot goes unused, which is the safe side
                    ticket.future.set_result(None)
                    queue.waiting -= 1  # now, not in a callback: the next round must not ask for it
                if queue.waiting > 0 and wait_ms > 0:
                    await asyncio.sleep(max(MIN_WAIT_S, wait_ms / 1000))
        finally:
            queue.pump = None

    async def _take(self, key: str, wanted: int) -> tuple[int, int]:
        reply: Sequence[Any] = await self._script(keys=[key], args=[repr(self._rate_per_ms), self._burst, wanted])
        return int(reply[0]), int(reply[1])
