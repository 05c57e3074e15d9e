"""Priority lanes: which parked command takes an org's next Genesys request slot.

A command that will not wait for the rate budget (:mod:`genesys.ratelimit`, ``max_wait_s``) joins the
client's *line*, a Redis sorted set of tickets, and is parked with a come-back time. Slots are handed
out only when they are due (within the limiter's burst tolerance, or within the caller's own
``max_wait_s``), never far ahead, and always to the ticket with the lowest score: a slot handed to a
parked ticket is kept for it under its slot key until it comes back (within a grace, below). So a
``high`` command arriving behind thousands of parked ``bulk`` ones is next in line, not behind every
slot the bulk ones were promised.

The order is start-time weighted fair queueing. Each lane has a weight (high 16, normal 4, bulk 1);
a ticket's score is ``max(v, the lane's last score) + 1 / weight``, where ``v`` is the score of the
ticket last served. Hence:

* a lane that keeps up (a trickle of ``high``) scores just above ``v``: its commands go before every
  waiting command of a lower lane, bar at most one ``normal`` and one ``bulk`` ticket already that close;
* within a lane, first come first served (its scores only grow);
* no lane is starved: with every lane backlogged they share slots 16:4:1, so ``bulk`` gets at least
  one slot in 21, and the ``bulk`` command first in its lane is served within about 22 slots whatever
  arrives in the higher lanes (4.4 s at Genesys' 300 requests/minute).

A come-back time is a lower bound (the ticket's rank times the slot interval, after the next free
slot): tickets inserted ahead later only delay it, so a parked command does not come back long after a
slot was handed to it and the budget is not left unused. A command that comes back too early is told
the new estimate. A handed-out slot can be taken late by the limiter's burst tolerance or its network
guard, whichever is longer (the slot interval already allows for requests reaching Genesys that late);
a command back later than that lost the slot (used later, it could exceed the limit) but goes first in
line.

A command that ends while parked (it expired, or failed for good) leaves the line in the transaction
that records its outcome (:func:`line_ticket`): a ticket nobody comes back for would be handed a slot.

Only a command's first request goes through the line (it is the one that may be put off); its later
requests, and callers without a ``max_wait_s`` (they wait in place), take the next free slot directly.
"""

from __future__ import annotations

from typing import NamedTuple

from genesys.effects import LuaScript, Plan
from genesys.keys import ClientKeys
from genesys.orgs import target_for
from parley.orgs import UnknownOrg
from parley.settings import Settings
from schemas.common import Lane

WEIGHTS: dict[Lane, int] = {Lane.high: 16, Lane.normal: 4, Lane.bulk: 1}
"""Each lane's share of the slots when every lane is waiting."""

MOST_GRANTS_PER_CALL = 64
"""A caller hands out at most this many due slots to parked tickets ahead of it in one call."""

LINE_KEPT_MS = 86_400_000
"""The line (and its virtual time) is forgotten this long after the last caller."""

_TAKE_IN_LINE = LuaScript("""
-- KEYS[1]: next free slot (ms); KEYS[2]: pause flag; KEYS[3]: the caller's ticket, also where a slot
-- handed to it while parked is kept (its time, ms); KEYS[4]: the line (zset of tickets by score);
-- KEYS[5]: the line's virtual time 'v' and each lane's last score (hash).
-- ARGV[1]: slot interval (ms); ARGV[2]: burst tolerance (ms); ARGV[3]: longest wait accepted (ms, >= 0);
-- ARGV[4]: how long a handed-out slot is kept after its time (ms); ARGV[5]: the caller's lane;
-- ARGV[6]: its lane's step (1 / weight); ARGV[7]: the line's TTL (ms); ARGV[8]: most grants per call;
-- ARGV[9]: how late after its time a handed-out slot may still be taken (ms).
-- Returns {retry_ms, wait_ms, come_back_ms}: retry_ms > 0: nothing taken, try again after it (within the
-- accepted wait); wait_ms: the caller's slot is taken, send after it; come_back_ms > 0: parked.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local longest, kept = tonumber(ARGV[3]), tonumber(ARGV[4])
local me, line, lanes = KEYS[3], KEYS[4], KEYS[5]
local function fmt(x) return string.format('%.17g', x) end
local function join(score)
  if score == nil then
    if redis.call('ZSCORE', line, me) then return end
    local v = tonumber(redis.call('HGET', lanes, 'v')) or 0
    local last = tonumber(redis.call('HGET', lanes, ARGV[5])) or 0
    score = math.max(v, last) + tonumber(ARGV[6])
    redis.call('HSET', lanes, ARGV[5], fmt(score))
  end
  redis.call('ZADD', line, fmt(score), me)
  redis.call('PEXPIRE', line, ARGV[7])
  redis.call('PEXPIRE', lanes, ARGV[7])
end
local function next_free()
  local tat = tonumber(redis.call('GET', KEYS[1])) or now
  if tat < now then tat = now end
  return tat
end
local held = tonumber(redis.call('GET', me))
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then
  if not held then join(nil) end
  if paused > longest then return {0, 0, paused} end
  return {paused, 0, 0}
end
if held then
  redis.call('DEL', me)
  if now <= held + tonumber(ARGV[9]) then
    -- Back for the slot handed to it while parked.
    local wait = held - now - tolerance
    if wait > longest then
      redis.call('SET', me, fmt(held), 'PX', math.ceil(held - now + kept))
      return {0, 0, math.ceil(wait)}
    end
    if wait < 0 then wait = 0 end
    return {0, math.ceil(wait), 0}
  end
  -- Back too late: the slot lapsed (a used-late slot could burst), but the caller keeps its turn.
  join(tonumber(redis.call('HGET', lanes, 'v')) or 0)
else
  join(nil)
end
for _ = 1, tonumber(ARGV[8]) do
  local tat = next_free()
  if tat - now - tolerance > longest then break end
  local head = redis.call('ZRANGE', line, 0, 0, 'WITHSCORES')
  redis.call('ZREM', line, head[1])
  redis.call('HSET', lanes, 'v', head[2])
  local after = tat + interval
  redis.call('SET', KEYS[1], fmt(after), 'PX', math.ceil(after - now) + 1000)
  if head[1] == me then
    local wait = tat - now - tolerance
    if wait < 0 then wait = 0 end
    return {0, math.ceil(wait), 0}
  end
  redis.call('SET', head[1], fmt(tat), 'PX', math.ceil(tat - now + kept))
end
local rank = redis.call('ZRANK', line, me)
local come_back = math.max(1, math.ceil(math.max(0, next_free() - now - tolerance) + rank * interval))
if come_back <= longest then return {come_back, 0, 0} end
return {0, 0, come_back}
""")


class LineKeys(NamedTuple):
    """The line of one OAuth client, kept beside its rate limiter's key."""

    line: str
    lanes: str

    @classmethod
    def of(cls, rate_key: str) -> LineKeys:
        return cls(line=f"{rate_key}:line", lanes=f"{rate_key}:lanes")


class Answer(NamedTuple):
    retry_ms: int
    """Nothing taken: the caller's turn is within its accepted wait; try again after this."""
    wait_ms: int
    """The caller's slot is taken: send after this."""
    come_back_ms: int
    """Parked: the caller's ticket keeps its place; come back after this."""


def plan_take_in_line(rate_key: str, pause_key: str, ticket_key: str, lane: Lane, *, interval_ms: float,
                      tolerance_ms: float, grace_ms: float, max_wait_ms: float, kept_ms: int) -> Plan[Answer]:
    """One attempt of a parked-or-waiting caller (``ticket_key``: its slot key) at the next slot, in its
    lane's turn; :class:`Answer` says what came of it. A slot handed to it while parked can be taken up to
    ``grace_ms`` after its time."""
    line = LineKeys.of(rate_key)
    answer = yield from _TAKE_IN_LINE.call(
        (rate_key, pause_key, ticket_key, line.line, line.lanes),
        (f"{interval_ms:.3f}", f"{tolerance_ms:.3f}", f"{max_wait_ms:.3f}", str(kept_ms), lane.value,
         repr(1 / WEIGHTS[lane]), str(LINE_KEPT_MS), str(MOST_GRANTS_PER_CALL), f"{grace_ms:.3f}"),
    )
    return Answer(*(int(x) for x in answer))


def line_ticket(settings: Settings, org: str, holder: str) -> tuple[str, str] | None:
    """``holder``'s ticket in the line of ``org``'s OAuth client: (line key, member), to remove when the
    command ends; None when the org has no client (then nothing is rate limited) or is no longer known."""
    try:
        target = target_for(settings, org)
    except UnknownOrg:
        return None
    if target.credentials is None:
        return None
    keys = ClientKeys.for_client(target.endpoints.login_url, target.credentials.client_id)
    return LineKeys.of(keys.rate).line, keys.slot(holder)
