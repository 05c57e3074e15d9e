"""Who owns which guest session: worker leases, the routing lease, adoption of a dead worker's sessions.

A session names its owner (a worker id) and a fencing token in its record (:mod:`workers.guest.store`).
The owner's claim is only as good as the owner's lease: one key per worker, TTL ``lease_ttl_ms``,
renewed every ``renew_every_s`` (about TTL/3). Renewing one key per worker, not one per session, is
what lets a worker hold ten thousand sessions. When a lease is gone the worker is dead and each of its
sessions is adopted by exactly one other worker: :data:`_ADOPT` moves a batch from the dead worker's
``owned`` set to the adopter's and gives each session a new fencing token, in one script. A worker
whose renewal fails has been declared dead (it stalled past its TTL): it stops touching its sessions,
and its late writes fail the fence anyway.

The renewal has a Redis connection of its own (``lease_client``): on the worker's shared pool it queued
behind session work (ten thousand runners opening at once) past its TTL, and the worker declared itself
dead. Nothing else uses that connection, so a renewal waits for Redis only, never for sessions.

On SIGTERM a worker closes its sockets, then deletes its lease and says so on ``announce``: the others
adopt at once instead of waiting for the TTL.

The same renewal keeps the routing lease: exactly one worker routes ``parley:guest:commands``, so
commands reach session inboxes in the order producers sent them (see :mod:`workers.guest.routing`).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass

import redis.asyncio as aredis

from parley import keys as parley_keys
from parley.leases import DELETE_IF_EQUAL_FN, EXTEND_IF_EQUAL_FN, LeaseLost
from workers.guest import keys as guest_keys
from workers.guest.store import FENCE

HEARTBEAT_COMPONENT = "guest"
"""``parley status`` finds live guest workers by ``parley:heartbeat:guest:*``."""

# KEYS: worker lease, heartbeat, router lease. ARGV: lease ttl ms, worker id, heartbeat ttl s, may route.
# -1: the worker lease is gone (declared dead); 1: renewed and routing; 0: renewed, not routing (another
# worker routes, or this one is stopping and gives the routing lease up).
_RENEW = EXTEND_IF_EQUAL_FN + DELETE_IF_EQUAL_FN + """
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then return -1 end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
if ARGV[4] ~= '1' then
  delete_if_equal(KEYS[3], ARGV[2])  -- stopping: let another worker route now
  return 0
end
if extend_if_equal(KEYS[3], ARGV[2], ARGV[1]) == 1 then return 1 end
if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[1]) then return 1 end
return 0
"""

# KEYS: worker lease, heartbeat, router lease, announce stream. ARGV: worker id.
_RELEASE = DELETE_IF_EQUAL_FN + """
redis.call('DEL', KEYS[1], KEYS[2])
delete_if_equal(KEYS[3], ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', 1000, '*', 'worker', ARGV[1])
return 1
"""

# KEYS: dead worker's owned set, adopter's owned set, workers set, dead worker's lease.
# ARGV: dead id, adopter id, batch size, sessions' name prefix, now ms, fences' name prefix, doorbells' name
# prefix. Returns the adopted idents.
_ADOPT = FENCE + """
if redis.call('EXISTS', KEYS[4]) == 1 then return {} end
local adopted = {}
for _, ident in ipairs(redis.call('SRANDMEMBER', KEYS[1], ARGV[3])) do
  redis.call('SREM', KEYS[1], ident)
  local session = ARGV[4] .. ident
  local status = redis.call('HGET', session, 'status')
  if redis.call('HGET', session, 'owner') == ARGV[1] and status and status ~= 'ended' then
    local token = fence_token(ARGV[6] .. ident, ARGV[5], FENCE_TTL_MS)
    redis.call('HSET', session, 'owner', ARGV[2], 'token', token)
    redis.call('SADD', KEYS[2], ident)
    adopted[#adopted + 1] = ident
  end
end
if redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
  redis.call('DEL', ARGV[7] .. ARGV[1])
end
return adopted
"""


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


@dataclass(frozen=True)
class WorkerLoad:
    worker_id: str
    sessions: int


class Ownership:
    def __init__(self, client: aredis.Redis, worker_id: str, lease_ttl_ms: int, *,
                 lease_client: aredis.Redis | None = None) -> None:
        self.redis = client
        self.worker_id = worker_id
        self.lease_ttl_ms = lease_ttl_ms
        leases = lease_client or client  # renewal and release only: see the module docstring
        self._renew = leases.register_script(_RENEW)
        self._release = leases.register_script(_RELEASE)
        self._adopt = client.register_script(_ADOPT)
        self._heartbeat = parley_keys.heartbeat(HEARTBEAT_COMPONENT, worker_id)
        self._heartbeat_ttl_s = max(1, -(-lease_ttl_ms // 1000))

    async def register(self) -> None:
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(guest_keys.worker(self.worker_id), info, px=self.lease_ttl_ms)
            pipe.sadd(guest_keys.WORKERS, self.worker_id)
            pipe.set(self._heartbeat, "1", ex=self._heartbeat_ttl_s)
            await pipe.execute()

    async def renew(self, *, may_route: bool = True) -> bool:
        """Renew the lease (and the routing lease, taking it if free); True when this worker routes."""
        reply = int(await self._renew(
            keys=[guest_keys.worker(self.worker_id), self._heartbeat, guest_keys.ROUTER],
            args=[self.lease_ttl_ms, self.worker_id, self._heartbeat_ttl_s, "1" if may_route else "0"],
        ))
        if reply < 0:
            # Other workers may already have adopted its sessions.
            raise LeaseLost(f"guest worker {self.worker_id} lost its lease")
        return reply == 1

    async def release(self) -> None:
        """Give everything up now (after the sockets are closed): others adopt at once."""
        await self._release(
            keys=[guest_keys.worker(self.worker_id), self._heartbeat, guest_keys.ROUTER, guest_keys.ANNOUNCE],
            args=[self.worker_id])

    async def dead_workers(self) -> list[str]:
        """Registered workers whose lease is gone (their sessions are up for adoption)."""
        members = [w for w in await self.redis.smembers(guest_keys.WORKERS)]
        ids = [w.decode() if isinstance(w, bytes) else w for w in members if w]
        others = [w for w in ids if w != self.worker_id]
        if not others:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for w in others:
                pipe.exists(guest_keys.worker(w))
            alive = await pipe.execute()
        return [w for w, up in zip(others, alive, strict=True) if not up]

    async def adopt_from(self, dead: str, batch: int) -> list[str]:
        """Take up to ``batch`` of ``dead``'s sessions; [] once it has none left (or is alive)."""
        reply = await self._adopt(
            keys=[guest_keys.owned(dead), guest_keys.owned(self.worker_id), guest_keys.WORKERS,
                  guest_keys.worker(dead)],
            args=[dead, self.worker_id, batch, guest_keys.session(""), int(time.time() * 1000), guest_keys.fence(""),
                  guest_keys.doorbell("")],
        )
        return [x.decode() if isinstance(x, bytes) else x for x in reply]

    async def loads(self) -> list[WorkerLoad]:
        """Live workers with how many sessions each owns (the router gives new sessions to the least busy)."""
        members = await self.redis.smembers(guest_keys.WORKERS)
        ids = sorted(w.decode() if isinstance(w, bytes) else w for w in members)
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for w in ids:
                pipe.exists(guest_keys.worker(w))
                pipe.scard(guest_keys.owned(w))
            replies = await pipe.execute()
        return [WorkerLoad(w, int(replies[2 * i + 1])) for i, w in enumerate(ids) if replies[2 * i]]

    async def owned(self) -> list[str]:
        members = await self.redis.smembers(guest_keys.owned(self.worker_id))
        return [m.decode() if isinstance(m, bytes) else m for m in members]
