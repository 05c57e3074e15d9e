"""What the guest worker keeps in Redis about each session, and the atomic steps that change it.

Per session (keys in :mod:`workers.guest.keys`):

* ``session`` hash: ``owner`` (a worker id) and ``token`` (a fencing token, larger for every new
  owner), ``status`` (starting -> live -> ended), the command ``cursor`` and ``current`` command, the
  Genesys ids, the relay checkpoint. Never a token or a JWT.
* ``inbox`` stream: the session's commands in routing order. The owner takes them one at a time
  (``current``), so a command a dead owner had in hand is known to its adopter, and nothing queued
  behind it is lost.
* ``secret``: the web messaging session token or the Guest Chat create answer (JWT, event stream
  URI), TTL = the session's lifetime. Only the owner reads it, to connect or resume.
* ``relayed`` set: ids of everything relayed as an event. Appending an event and adding its id happen
  in one script, so a message seen twice (reconnect backfill, an adopter replaying history, a
  duplicated frame) is an event once.

Every write by an owner is fenced: the script checks the session's token first, so a worker that
stalled past its lease and lost the session cannot overwrite its adopter's state. Scripts that follow
a worker id to its keys (owner lease, doorbell, owned set) get the names' beginnings from
:mod:`workers.guest.keys` and finish them inside Lua: fine on one Redis primary, which is what Parley
assumes (see :mod:`parley.leases`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr

from parley import keys, leases
from parley.events import EVENT_FIELD, EventLog
from parley.records import State
from parley.settings import Settings
from schemas.events import EventBase
from workers.guest import keys as guest_keys
from workers.guest.batch import Command, RedisBatcher
from workers.guest.commands import RUN_WORDS, Words

DOORBELL_MAXLEN = 10_000
FENCE_TTL_MS = 30 * 24 * 3600 * 1000

# Fencing tokens (parley.leases): fence_token(fence key, now ms, FENCE_TTL_MS).
FENCE = leases.FENCE_TOKEN + f"local FENCE_TTL_MS = {FENCE_TTL_MS}\n"

# KEYS: session, inbox, fence, relayed, secret, commands stream, command record.
# ARGV: 1 chosen owner, 2 command id, 3 type, 4 group, 5 entry id, 6 now ms, 7 ttl ms, 8 session_key,
#       9 org, 10 protocol, 11 owned sets' name prefix, 12 ident, 13 doorbell maxlen, 14 this worker,
#       15 worker leases' name prefix, 16 doorbells' name prefix.
# A command whose record is gone (retention passed) or already ended (expired while it waited) is only
# acknowledged. A guest.start for no session (or an ended one) creates the record for the chosen owner; a command
# for an orphan (its owner's lease is gone) hands it to the chosen owner; every routed command is
# appended to the inbox and acknowledged in the same step, then the owner's doorbell rings.
_TERMINAL = "local TERMINAL = {" + ", ".join(f"['{s.value}'] = true" for s in State if s.terminal) + "}\n"
_ROUTE = FENCE + _TERMINAL + """
local owned, lease, doorbell = ARGV[11], ARGV[15], ARGV[16]
local ident, chosen = ARGV[12], ARGV[1]
local state = redis.call('HGET', KEYS[7], 'state')
if (not state) or TERMINAL[state] then
  redis.call('XACK', KEYS[6], ARGV[4], ARGV[5])
  if state then return {'finished', ''} end
  return {'gone', ''}
end
local status = redis.call('HGET', KEYS[1], 'status')
local owner
if (not status) or status == 'ended' then
  if ARGV[3] ~= 'guest.start' then
    if status then return {'ended', ''} end
    return {'none', ''}
  end
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[4], KEYS[5])
  redis.call('HSET', KEYS[1], 'session_key', ARGV[8], 'org', ARGV[9], 'protocol', ARGV[10],
             'status', 'starting', 'owner', chosen, 'token', fence_token(KEYS[3], ARGV[6], FENCE_TTL_MS),
             'start_command_id', ARGV[2], 'cursor', '0-0', 'current', '', 'created_at', ARGV[6])
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  redis.call('SADD', owned .. chosen, ident)
  owner = chosen
else
  owner = redis.call('HGET', KEYS[1], 'owner')
  if (not owner) or owner == '' or redis.call('EXISTS', lease .. owner) == 0 then
    if owner and owner ~= '' then redis.call('SREM', owned .. owner, ident) end
    redis.call('HSET', KEYS[1], 'owner', chosen, 'token', fence_token(KEYS[3], ARGV[6], FENCE_TTL_MS))
    redis.call('SADD', owned .. chosen, ident)
    owner = chosen
  end
end
redis.call('XADD', KEYS[2], '*', 'command_id', ARGV[2], 'type', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
redis.call('XACK', KEYS[6], ARGV[4], ARGV[5])
if owner ~= ARGV[14] then
  redis.call('XADD', doorbell .. owner, 'MAXLEN', '~', ARGV[13], '*', 'session', ident)
end
return {'routed', owner}
"""

# KEYS: session, inbox. ARGV: 1 token, 2 now (s), 3 command key prefix, 4 finished command id ('' = none),
# 5 take ('1' = take the next command), 6 in-flight index key, 7 started_at ('' = do not mark running),
# 8 n, then n words of field/value pairs to set with the finish, then the finished command's ending
# (Outcomes' transaction as words, see workers.guest.commands.RUN_WORDS; none for a bare finish).
# The ending is recorded first, whoever owns the session now (it is what happened); a Redis error in it
# aborts the script, so nothing is taken unless it was recorded. Finishing clears ``current`` (if it is
# still that command); taking makes the next command after the cursor current and returns it with its
# command record, so one round trip ends a command and starts the next. With a started_at, a command
# taken still ``accepted`` is marked running as Records.set_fields does (state, attempts, started_at,
# the in-flight index), saving the runner that round trip too. A guest.send is marked ``handed`` as it
# is taken: it goes to the machine right away, and an adopter that finds it so checks history before
# sending it (a check too many is harmless).
_ADVANCE = RUN_WORDS + """
local nfields = tonumber(ARGV[8])
run_words(ARGV, 9 + nfields)
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return {'lost'} end
local current = redis.call('HGET', KEYS[1], 'current')
if ARGV[4] ~= '' and current == ARGV[4] then
  local fields = {'current', '', 'current_type', '', 'handed', '0'}
  for i = 9, 8 + nfields do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
  current = ''
end
if ARGV[5] ~= '1' then return {'finished'} end
local function begin(cmd)
  local key = ARGV[3] .. cmd
  if ARGV[7] ~= '' and redis.call('HGET', key, 'state') == 'accepted' then
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'state', 'running', 'started_at', ARGV[7])
    redis.call('ZADD', ARGV[6], ARGV[2], cmd)
  end
  return redis.call('HGETALL', key)
end
if current and current ~= '' then
  local kind = redis.call('HGET', KEYS[1], 'current_type')
  return {'busy', current, kind, unpack(begin(current))}
end
local cursor = redis.call('HGET', KEYS[1], 'cursor') or '0-0'
local rows = redis.call('XRANGE', KEYS[2], '(' .. cursor, '+', 'COUNT', 1)
if #rows == 0 then return {'empty'} end
local fields, cmd, kind = rows[1][2], '', ''
for i = 1, #fields, 2 do
  if fields[i] == 'command_id' then cmd = fields[i + 1] elseif fields[i] == 'type' then kind = fields[i + 1] end
end
redis.call('HSET', KEYS[1], 'cursor', rows[1][1], 'current', cmd, 'current_type', kind, 'taken_at', ARGV[2],
           'handed', kind == 'guest.send' and '1' or '0')
return {'taken', cmd, kind, unpack(begin(cmd))}
"""

# KEYS: session. ARGV: token, then field/value pairs.
_UPDATE = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
return 1
"""

# KEYS: session, inbox, relayed, secret. ARGV: token, retention ms, owned sets' name prefix, ident, ended_by.
# The secret goes at once; the rest stays for ``retention`` so late commands learn the session ended.
_END = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
local owner = redis.call('HGET', KEYS[1], 'owner')
redis.call('HSET', KEYS[1], 'status', 'ended', 'ended_by', ARGV[5])
redis.call('DEL', KEYS[4])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
if owner then redis.call('SREM', ARGV[3] .. owner, ARGV[4]) end
return 1
"""

# KEYS: relayed set, events stream. ARGV: events maxlen, ttl ms, then (dedup id, payload) pairs; an
# empty dedup id always appends (typing indicators are not deduplicated).
_RELAY = """
local appended = 0
for i = 3, #ARGV, 2 do
  if ARGV[i] == '' or redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'EVENT_FIELD', ARGV[i + 1])
    appended = appended + 1
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return appended
""".replace("EVENT_FIELD", EVENT_FIELD)


class SessionStatus(StrEnum):
    starting = "starting"
    live = "live"
    ended = "ended"


class SessionRecord(BaseModel):
    """The ``session`` hash as read back."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    ident: str
    session_key: str
    org: str
    protocol: Literal["webmessaging", "guestchat"]
    status: SessionStatus
    owner: str = ""
    token: str = ""
    start_command_id: str
    cursor: str = "0-0"
    current: str = ""
    current_type: str = ""
    taken_at: float = 0.0
    handed: bool = False
    conversation_id: str | None = None
    member_id: str | None = None
    last_own_id: str | None = None
    checkpoint: str | None = None
    ended_by: str | None = None


class SessionSecret(BaseModel):
    """What resuming needs and nothing else may see: SecretStr, so a logged model shows stars."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: SecretStr | None = None  # web messaging: the client-made session token
    created: SecretStr | None = None  # guest chat: the create answer (id, jwt, eventStreamUri, member)

    def dump(self) -> str:
        return json.dumps({k: v.get_secret_value() for k, v in (("token", self.token), ("created", self.created))
                           if v is not None})


@dataclass(frozen=True)
class Routed:
    outcome: Literal["routed", "none", "ended", "finished", "gone"]
    owner: str = ""


@dataclass(frozen=True)
class RouteRequest:
    ident: str
    chosen: str  # the owner if the session needs one (new, or its owner is dead)
    me: str  # the routing worker (its own doorbell is not rung: it is told in process)
    command_id: str
    command_type: str
    group: str
    entry_id: str
    session_key: str
    org: str
    protocol: str
    ttl_s: int


@dataclass(frozen=True)
class Taken:
    outcome: Literal["taken", "busy", "empty", "lost", "finished"]
    command_id: str = ""
    type: str = ""
    record: dict[str, str] = field(default_factory=dict)  # the command record's fields ({} if it expired)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SessionStore:
    """Async access to the per-session state; every owner write is fenced by ``token``."""

    def __init__(self, batcher: RedisBatcher, settings: Settings) -> None:
        self.redis = batcher.redis
        self._batcher = batcher
        self.events = EventLog(self.redis, settings)  # type: ignore[arg-type]  # only its payload/stream
        self._route = batcher.script(_ROUTE)
        self._advance = batcher.script(_ADVANCE)
        self._update = batcher.script(_UPDATE)
        self._end = batcher.script(_END)
        self._relay = batcher.script(_RELAY)
        self._events_maxlen = settings.events_maxlen

    async def route(self, requests: list[RouteRequest]) -> list[Routed]:
        """Route commands in order, all in one round trip (each step is its own atomic script)."""
        if not requests:
            return []
        k, now_ms = guest_keys, int(time.time() * 1000)
        owned, lease, doorbell = k.owned(""), k.worker(""), k.doorbell("")  # names finished in the script

        def stage(commands: list[Command]) -> None:
            for r in requests:
                self._route.stage(
                    commands,
                    [k.session(r.ident), k.inbox(r.ident), k.fence(r.ident), k.relayed(r.ident), k.secret(r.ident),
                     k.COMMANDS, keys.command(r.command_id)],
                    [r.chosen, r.command_id, r.command_type, r.group, r.entry_id, now_ms, r.ttl_s * 1000,
                     r.session_key, r.org, r.protocol, owned, r.ident, DOORBELL_MAXLEN, r.me, lease, doorbell])

        replies = await self._batcher.run(stage)
        return [Routed(_text(reply[0]), _text(reply[1])) for reply in replies]  # type: ignore[arg-type]

    async def load(self, ident: str) -> SessionRecord | None:
        data = await self.redis.hgetall(guest_keys.session(ident))
        if not data:
            return None
        fields = {_text(k): _text(v) for k, v in data.items()}
        return SessionRecord.model_validate({"ident": ident, **fields})

    async def take(self, ident: str, token: str, *, finished: str = "", ending: Words = (), begin: bool = False,
                   **fields: str) -> Taken:
        """Record ``finished``'s ``ending`` (:meth:`CommandDesk.succeeded`, :meth:`~CommandDesk.failed`),
        finish it (setting ``fields``), then make the next command current, marked running if ``begin``;
        ``busy`` when one already is (a previous owner's), with its record either way."""
        return await self._step(ident, token, finished, ending, fields, take=True, begin=begin)

    async def finish(self, ident: str, token: str, command_id: str, *, ending: Words = (), **fields: str) -> bool:
        """Record the command's ``ending`` and clear ``current``; False if the session is no longer ours."""
        return (await self._step(ident, token, command_id, ending, fields, take=False, begin=False)).outcome != "lost"

    async def _step(self, ident: str, token: str, finished: str, ending: Words, fields: dict[str, str], *,
                    take: bool, begin: bool) -> Taken:
        flat = [x for pair in fields.items() for x in pair]
        now = time.time()
        started_at = datetime.fromtimestamp(now, UTC).isoformat() if begin else ""
        reply = [_text(x) for x in await self._advance(
            keys=[guest_keys.session(ident), guest_keys.inbox(ident)],
            args=[token, now, keys.command(""), finished, "1" if take else "0", keys.INFLIGHT_ZSET, started_at,
                  len(flat), *flat, *ending])]
        outcome, rest = reply[0], reply[1:]
        if outcome not in ("taken", "busy"):
            return Taken(outcome)  # type: ignore[arg-type]
        return Taken(outcome, rest[0], rest[1], dict(zip(rest[2::2], rest[3::2], strict=True)))  # type: ignore[arg-type]

    async def update(self, ident: str, token: str, **fields: str | int | float) -> bool:
        flat = [str(x) for pair in fields.items() for x in pair]
        return bool(await self._update(keys=[guest_keys.session(ident)], args=[token, *flat]))

    async def end(self, ident: str, token: str, by: str, retention_s: int) -> bool:
        k = guest_keys
        return bool(await self._end(keys=[k.session(ident), k.inbox(ident), k.relayed(ident), k.secret(ident)],
                                    args=[token, retention_s * 1000, k.owned(""), ident, by]))

    async def relay(self, ident: str, events: list[tuple[str, EventBase]], ttl_s: int) -> int:
        """Append each event unless its dedup id was relayed before ('' = always); how many went."""
        if not events:
            return 0
        args: list[str | int] = [self._events_maxlen, ttl_s * 1000]
        for dedup_id, event in events:
            args += [dedup_id, self.events.payload(event)]
        return int(await self._relay(keys=[guest_keys.relayed(ident), self.events.stream], args=args))

    async def get_secret(self, ident: str) -> SessionSecret | None:
        raw = await self.redis.get(guest_keys.secret(ident))
        return SessionSecret.model_validate_json(raw) if raw else None

    async def put_secret(self, ident: str, secret: SessionSecret, ttl_s: float) -> None:
        await self.redis.set(guest_keys.secret(ident), secret.dump(), px=max(1000, int(ttl_s * 1000)))

    async def touch(self, ident: str, ttl_s: float) -> None:
        """Stretch the session's keys to its (new) lifetime."""
        k, ms = guest_keys, max(1000, int(ttl_s * 1000))
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in (k.session(ident), k.inbox(ident), k.relayed(ident), k.secret(ident)):
                pipe.pexpire(key, ms)
            await pipe.execute()
