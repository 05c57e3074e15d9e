"""The command record: idempotency at the door and the execution state of every command.

Two keys per command, both kept for ``idempotency_retention_s``:

* ``parley:idem:{org}:{type}:{key}`` -> command id. Claimed with a Lua script that, atomically,
  creates the record and appends ``command.accepted``: a key is claimed once, whatever crashes.
* ``parley:cmd:{command_id}`` hash: the command body (needed to execute it; never passed to Celery),
  the stream entry it came from, and its state:

  ``accepted`` -> ``running`` -> ``succeeded`` | ``failed`` | ``expired``

  ``attempts`` counts executions started, ``deliveries`` counts task deliveries (a cap stops a
  poison task from looping), ``unknown_outcome`` is set while a Genesys call's effect is unknown,
  so the next attempt looks Genesys up before acting again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import redis
from pydantic import BaseModel, ConfigDict

from parley import keys
from parley.settings import Settings
from schemas.commands import Command
from schemas.common import utcnow
from schemas.events import CommandAccepted


class State(StrEnum):
    accepted = "accepted"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    expired = "expired"

    @property
    def terminal(self) -> bool:
        return self in (State.succeeded, State.failed, State.expired)


class CommandRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    command_id: str
    type: str
    org: str
    idempotency_key: str
    correlation_id: str | None = None
    source_entry_id: str | None = None
    state: State
    body: str
    accepted_at: str
    dispatched: bool = False
    deliveries: int = 0
    attempts: int = 0
    unknown_outcome: bool = False
    result: str | None = None
    started_at: str | None = None
    unknown_since: str | None = None
    crashes: int = 0
    """Executions that died mid-call: each later execution that found the record still running counts one
    (a duplicated or redelivered Celery message is not a crash: it finds the record finished, or busy)."""
    unknown_until: str | None = None
    """The latest moment a lost attempt's effect can have happened: when the runner saw the answer
    lost, or when the next execution began after one died mid-call."""
    finished_at: str | None = None
    order_keys: str = ""
    """The order lists the command waits in, space-separated (:mod:`parley.ordering`)."""
    traceparent: str | None = None
    """The W3C trace context of ingest's span, when tracing is on (:mod:`parley.tracing`)."""


@dataclass(frozen=True)
class Claim:
    new: bool
    command_id: str
    record: CommandRecord
    ready: bool = True
    """A new claim: no earlier unfinished command shares an order key with it (it may run now)."""


# KEYS: idem key, command key, events stream, in-flight index, then the command's order lists
# (:mod:`parley.ordering`). ARGV: command id, retention s, events maxlen, accepted event JSON, now
# (epoch s), command key prefix, then the record fields as name/value pairs. Returns {1, id, ready}
# when claimed (ready: first in every order list, so it may be dispatched now), {0, holder id,
# holder's record...} when not.
_CLAIM = """
local existing = redis.call('GET', KEYS[1])
if existing then return {0, existing, unpack(redis.call('HGETALL', ARGV[6] .. existing))} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'event', ARGV[4])
local ready = 1
for i = 5, #KEYS do
  redis.call('RPUSH', KEYS[i], ARGV[1])
  redis.call('EXPIRE', KEYS[i], ARGV[2])
  if redis.call('LINDEX', KEYS[i], 0) ~= ARGV[1] then ready = 0 end
end
return {1, ARGV[1], ready}
"""


# KEYS: command key, execution lease key, in-flight index. ARGV: lease token, lease ms, now (ISO),
# now (epoch s). Returns {'missing'} | {'terminal', record...} | {'busy', pttl} | {'begun', record...}
# with the record as it was before this execution began. One round trip starts an execution: it
# refuses a finished command, takes the lease, counts the delivery and marks the record running
# (an attempt found running, or with an unknown outcome, keeps the time since which Genesys may hold
# its effect in unknown_since; one found running died mid-call, so its effect, if any, happened
# before now: unknown_until).
_BEGIN = """
local rec = redis.call('HGETALL', KEYS[1])
if #rec == 0 then return {'missing'} end
local h = {}
for i = 1, #rec, 2 do h[rec[i]] = rec[i+1] end
if h.state == 'succeeded' or h.state == 'failed' or h.state == 'expired' then return {'terminal', unpack(rec)} end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'busy', tostring(redis.call('PTTL', KEYS[2]))}
end
local deliveries = redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[3])
local recovering = h.state == 'running' or h.unknown_outcome == '1'
if recovering and not h.unknown_since and h.started_at then
  redis.call('HSET', KEYS[1], 'unknown_since', h.started_at)
end
if h.state == 'running' then
  redis.call('HSET', KEYS[1], 'unknown_until', ARGV[3])
  h.crashes = tostring(redis.call('HINCRBY', KEYS[1], 'crashes', 1))
end
redis.call('ZADD', KEYS[3], ARGV[4], h.command_id)
h.deliveries = tostring(deliveries)
local out = {'begun'}
for k, v in pairs(h) do out[#out + 1] = k out[#out + 1] = v end
return out
"""


@dataclass(frozen=True)
class Begin:
    """What :meth:`Records.begin` found: ``status`` is missing, terminal, busy or begun."""

    status: str
    record: CommandRecord | None = None
    lease_pttl_ms: int = 0


class Records:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._claim = client.register_script(_CLAIM)
        self._begin = client.register_script(_BEGIN)

    def claim(self, command: Command, command_id: str, raw: str, source_entry_id: str,
              order_keys: Sequence[str] = (), traceparent: str | None = None) -> Claim:
        """Claim the command's idempotency key for ``command_id``, or return who holds it; a new claim
        joins ``order_keys`` (:mod:`parley.ordering`) in the same step."""
        accepted = CommandAccepted(
            idempotency_key=command.idempotency_key,
            correlation_id=command.correlation_id,
            command_type=command.type,
            command_id=command_id,
            org=command.org,
        )
        fields: dict[str, str] = {
            "command_id": command_id,
            "type": command.type,
            "org": command.org,
            "idempotency_key": command.idempotency_key,
            "source_entry_id": source_entry_id,
            "state": State.accepted.value,
            "body": raw,
            "accepted_at": utcnow().isoformat(),
        }
        if command.correlation_id:
            fields["correlation_id"] = command.correlation_id
        if order_keys:
            fields["order_keys"] = " ".join(order_keys)
        if traceparent:
            fields["traceparent"] = traceparent
        flat = [x for pair in fields.items() for x in pair]
        reply = self._claim(
            keys=[keys.idempotency(command.org, command.type, command.idempotency_key),
                  keys.command(command_id), self._settings.events_stream, keys.INFLIGHT_ZSET, *order_keys],
            args=[command_id, self._settings.idempotency_retention_s, self._settings.events_maxlen,
                  accepted.model_dump_json(exclude_none=True), time.time(), keys.command(""), *flat],
        )
        new, holder, *held = (x.decode() if isinstance(x, bytes) else x for x in reply)
        if new:
            return Claim(new=True, command_id=holder, record=CommandRecord.model_validate(fields),
                         ready=str(held[0]) == "1")
        if not held:  # the holder's record expired before its key: treat the key as free
            self._client.delete(keys.idempotency(command.org, command.type, command.idempotency_key))
            return self.claim(command, command_id, raw, source_entry_id, order_keys, traceparent)
        record = CommandRecord.model_validate(dict(zip(held[::2], held[1::2], strict=True)))
        return Claim(new=False, command_id=holder, record=record)

    def get(self, command_id: str) -> CommandRecord | None:
        data = self._client.hgetall(keys.command(command_id))
        if not data:
            return None
        return CommandRecord.model_validate({k: v for k, v in data.items()})

    def begin(self, command_id: str, lease_key: str, lease_token: str, lease_ms: int, now: str) -> Begin:
        """Start an execution in one round trip (see ``_BEGIN``); the record returned is as it was
        before, with ``deliveries`` counted."""
        reply = [x.decode() if isinstance(x, bytes) else x
                 for x in self._begin(keys=[keys.command(command_id), lease_key, keys.INFLIGHT_ZSET],
                                      args=[lease_token, lease_ms, now, time.time()])]
        status, rest = reply[0], reply[1:]
        if status == "missing":
            return Begin(status)
        if status == "busy":
            return Begin(status, lease_pttl_ms=max(0, int(rest[0])))
        return Begin(status, CommandRecord.model_validate(dict(zip(rest[::2], rest[1::2], strict=True))))

    def set_fields(self, command_id: str, pipe: redis.client.Pipeline | None = None, **fields: str | int) -> None:
        """Update the record; a state change also moves the command in (or out of) the in-flight index."""
        target = pipe if pipe is not None else self._client.pipeline(transaction=True)
        target.hset(keys.command(command_id), mapping={k: str(v) for k, v in fields.items()})
        if "state" in fields:
            if State(str(fields["state"])).terminal:
                target.zrem(keys.INFLIGHT_ZSET, command_id)
            else:
                target.zadd(keys.INFLIGHT_ZSET, {command_id: time.time()})
        if pipe is None:
            target.execute()

    def stalled(self, idle_s: float, limit: int = 100) -> list[str]:
        """Unfinished commands with no progress for ``idle_s`` seconds."""
        return list(self._client.zrangebyscore(keys.INFLIGHT_ZSET, 0, time.time() - idle_s, start=0, num=limit))

    def touch(self, command_id: str) -> None:
        self._client.zadd(keys.INFLIGHT_ZSET, {command_id: time.time()}, xx=True)

    def forget(self, command_id: str) -> None:
        self._client.zrem(keys.INFLIGHT_ZSET, command_id)

    def release_key_for_replay(self, command_id: str) -> bool:
        """Free a failed command's idempotency key so that a replay executes it again.

        Only a command that ended ``failed`` had no effect; any other state keeps its key.
        """
        record = self.get(command_id)
        if record is None or record.state is not State.failed:
            return False
        self._client.delete(keys.idempotency(record.org, record.type, record.idempotency_key))
        return True
