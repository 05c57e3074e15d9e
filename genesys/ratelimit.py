"""Fleet-wide request budget for one OAuth client, kept in Redis.

Genesys allows 300 requests/minute per client-credentials token and answers 429 beyond it; every
process sharing the client shares the budget. A GCRA in one Lua script (atomic, Redis' own clock,
so hosts need no synchronised clocks) *reserves* the next slot and says how long to wait for it:
callers never spin or lose slots to each other.

Why the interval is not simply 60 s / limit: GCRA with a burst tolerance of ``b`` slots admits at
most ``1 + b + t/interval`` requests in any window ``t``. Spacing slots by
``(60 s + guard) / (limit - b - 1)`` keeps every sliding minute under the limit even when requests
reach Genesys up to ``guard`` later than they were admitted (network jitter), at a cost of ~3% of
the budget at the defaults.

A 429 that gets through anyway (another application on the same client, a lower per-resource
limit) sets a pause key with the Retry-After as its PTTL: every process waits it out.

A caller that must not wait long (a Celery task holds a worker slot while it waits, which another
org's commands could use) passes ``max_wait_s``, a ``slot_key`` of its own and its lane: it takes its
turn in the client's line (:mod:`genesys.lanes`), and when that turn is further off,
:class:`RateBudgetWait` says when to come back. Its place in line is kept (no later caller of its lane
or a lower one takes it), a slot is kept for it under that key once it is due, each parked caller comes
back about once, when its turn is due, and a backlog drains at the budget's pace, higher lanes first.
"""

from __future__ import annotations

import logging

from genesys.effects import LuaScript, Pause, Plan, RedisCommand
from genesys.lanes import plan_take_in_line
from parley import metrics
from schemas.common import Lane

log = logging.getLogger(__name__)

_ACQUIRE = LuaScript("""
-- KEYS[1]: theoretical arrival time of the next free slot (ms); KEYS[2]: pause flag.
-- ARGV[1]: slot interval (ms); ARGV[2]: burst tolerance (ms).
-- Returns {paused_ms, wait_ms}. paused_ms > 0: nothing reserved, retry after it.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return {paused, 0} end
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1000)
local wait = tat - now - tonumber(ARGV[2])
if wait < 0 then wait = 0 end
return {0, math.ceil(wait)}
""")

_PAUSE = LuaScript("""
-- Extend, never shorten, the pause: the longest Retry-After seen wins.
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
return 0
""")

DEFAULT_GUARD_MS = 250.0
SLOT_KEPT_MS = 600_000  # a parked caller's slot is forgotten this long after it was due (it never came back)


class RateBudgetWait(Exception):
    """No request slot within the caller's ``max_wait_s``: nothing was sent; come back after ``delay_s``,
    when the slot kept for the caller is due."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.reason = f"the org's Genesys request budget has no slot for {delay_s:.1f} s"
        super().__init__(self.reason)


class RateLimiter:
    def __init__(
        self,
        rate_key: str,
        pause_key: str,
        limit_per_minute: int,
        *,
        burst: int | None = None,
        guard_ms: float = DEFAULT_GUARD_MS,
        org: str = "default",
    ) -> None:
        if limit_per_minute < 1:
            raise ValueError("limit_per_minute must be >= 1")
        self.rate_key = rate_key
        self.pause_key = pause_key
        self.limit_per_minute = limit_per_minute
        # A small burst keeps short sequences (disconnect, then verify) from waiting a slot each.
        self.burst = limit_per_minute // 50 if burst is None else burst
        self.interval_ms = (60_000.0 + guard_ms) / max(1, limit_per_minute - self.burst - 1)
        self.tolerance_ms = self.burst * self.interval_ms
        self.guard_ms = guard_ms
        # In metrics: the org, and the client's ident as in its Redis keys (a hash, not the client id).
        self.metric_labels = {"org": org, "client": rate_key.split(":")[-2 if ":" in rate_key else 0][:8]}
        metrics.rate_limit_per_minute.labels(**self.metric_labels).set(limit_per_minute)

    @property
    def sustained_per_minute(self) -> float:
        """Admissions per minute under constant demand (the share of the limit actually used)."""
        return 60_000.0 / self.interval_ms

    def plan_acquire(self, max_wait_s: float | None = None, slot_key: str | None = None,
                     lane: Lane = Lane.normal) -> Plan[None]:
        """Wait for and take one slot. With ``max_wait_s``, the caller takes its turn in ``lane``
        (:mod:`genesys.lanes`) and, when that is further off, :class:`RateBudgetWait` says when to come back;
        its place is kept under ``slot_key``, and the caller's next acquire with the same key takes it."""
        if (max_wait_s is None) != (slot_key is None):
            raise ValueError("max_wait_s and slot_key go together")
        waited_s = 0.0
        while True:
            if max_wait_s is None or slot_key is None:
                paused_ms, wait_ms = yield from _ACQUIRE.call(
                    (self.rate_key, self.pause_key), (f"{self.interval_ms:.3f}", f"{self.tolerance_ms:.3f}"))
                come_back_ms = 0
            else:
                paused_ms, wait_ms, come_back_ms = yield from plan_take_in_line(
                    self.rate_key, self.pause_key, slot_key, lane, interval_ms=self.interval_ms,
                    tolerance_ms=self.tolerance_ms, grace_ms=max(self.tolerance_ms, self.guard_ms),
                    max_wait_ms=max_wait_s * 1000, kept_ms=SLOT_KEPT_MS)
            if come_back_ms > 0:
                raise RateBudgetWait(come_back_ms / 1000)
            if paused_ms > 0:
                waited_s += paused_ms / 1000
                yield Pause(paused_ms / 1000)
                continue
            if wait_ms > 0:
                waited_s += wait_ms / 1000
                yield Pause(wait_ms / 1000)
                # A 429 elsewhere may have paused the client while we waited for our slot.
                if (yield RedisCommand("pttl", (self.pause_key,))) > 0:
                    continue
            metrics.rate_limit_slots.labels(**self.metric_labels).inc()
            metrics.rate_limit_wait.labels(**self.metric_labels).observe(waited_s)
            return

    def plan_pause(self, seconds: float) -> Plan[None]:
        """Stop every process using this client for ``seconds`` (a 429's Retry-After)."""
        ms = max(1, round(seconds * 1000))
        metrics.rate_limit_pauses.labels(**self.metric_labels).inc()
        log.warning("genesys rate limit: pausing client for %.1f s", ms / 1000)
        yield from _PAUSE.call((self.pause_key,), (ms,))
