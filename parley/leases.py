"""Leases: one holder at a time per Redis key, for a TTL, checked by the holder's token.

A lease is a key holding its holder's token with a TTL (``SET NX PX``): a holder that dies frees it
within one TTL. The rules every lease in Parley follows, written once here:

* Only the holder extends or releases it: both compare the token first, in Lua
  (:data:`EXTEND_IF_EQUAL`, :data:`DELETE_IF_EQUAL`), so a holder whose lease expired never touches its
  successor's.
* A fenced lease's token is a *fencing token* (:data:`FENCE_TOKEN`): a per-key counter bumped by
  ``INCR``, larger for every later holder. The counter has a TTL like every key; a missing one starts at
  the clock in ms, so tokens keep rising across a counter that expired after a long idle spell (unless
  one key averaged more than one lease per millisecond over the counter's whole life).
* A holder that finds its lease gone stops and says so: :class:`LeaseLost`; work done under it may have
  overlapped the next holder's.

Who holds what:

* :class:`Lease` (fenced, from :func:`try_fenced`): the state cache's lease on a customer or a
  conversation (:meth:`parley.state_cache.StateCache.lease`);
* :class:`Lease` (a random token): a command's execution lease, taken by the begin script of
  :mod:`parley.records` and renewed by :mod:`tasks.lease`;
* the guest worker's routing lease and each session's fencing token live inside its own atomic scripts
  (:mod:`workers.guest.ownership`, :mod:`workers.guest.store`), built from the Lua functions here;
* :class:`Lease` (a random token, from :func:`try_take`): the webhook relay's, one relay at a time
  (:mod:`workers.webhook`);
* the OAuth token lock of :mod:`genesys.auth` is released with :data:`DELETE_IF_EQUAL`.

Genesys cannot check fencing tokens, so a lease is an optimisation: exactly-once comes from the
idempotency record (reference celery-redis-reliability.md sections 2 and 8). It assumes one Redis
primary, not Redlock. Like redis-py's ``Lock``, but with fencing tokens and no thread of its own.
"""

from __future__ import annotations

import random
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import redis
from redis.commands.core import Script

# --- Lua: the steps, as functions other scripts are built from -------------------------------------------

FENCE_TOKEN = """
local function fence_token(fence_key, now_ms, ttl_ms)
  if redis.call('EXISTS', fence_key) == 0 then redis.call('SET', fence_key, now_ms) end
  local token = redis.call('INCR', fence_key)
  redis.call('PEXPIRE', fence_key, ttl_ms)
  return token
end
"""
"""Lua ``fence_token(fence_key, now_ms, ttl_ms)``: the next fencing token of a key (see the module doc)."""

EXTEND_IF_EQUAL_FN = """
local function extend_if_equal(key, token, ttl_ms)
  if redis.call('GET', key) ~= token then return 0 end
  redis.call('PEXPIRE', key, ttl_ms)
  return 1
end
"""
"""Lua ``extend_if_equal(key, token, ttl_ms)``: 1 and a fresh TTL if ``key`` still holds ``token``, else 0."""

DELETE_IF_EQUAL_FN = """
local function delete_if_equal(key, value)
  if redis.call('GET', key) == value then return redis.call('DEL', key) end
  return 0
end
"""
"""Lua ``delete_if_equal(key, value)``: 1 if ``key`` held ``value`` and is gone, else 0 (left alone)."""

# --- Lua: whole scripts ----------------------------------------------------------------------------------

# KEYS: lease, fencing counter. ARGV: lease ttl ms, counter ttl ms, clock ms. Returns the token or nil.
ACQUIRE_FENCED = FENCE_TOKEN + """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = fence_token(KEYS[2], ARGV[3], ARGV[2])
redis.call('SET', KEYS[1], tostring(token), 'PX', ARGV[1])
return token
"""

# KEYS: lease [, fencing counter]. ARGV: token, lease ttl ms [, counter ttl ms]. 1 if still held.
EXTEND_IF_EQUAL = EXTEND_IF_EQUAL_FN + """
if extend_if_equal(KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if KEYS[2] then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return 1
"""

# KEYS: one key. ARGV: expected value. Deletes only what the caller last saw (a lease it holds, a lock,
# an unreadable cache entry, a token that failed), never a value another worker wrote since.
DELETE_IF_EQUAL = DELETE_IF_EQUAL_FN + """
return delete_if_equal(KEYS[1], ARGV[1])
"""


class LeaseLost(RuntimeError):
    """The lease expired or another holder has it now: work done under it may have overlapped."""


class LeaseTimeout(TimeoutError):
    """The lease stayed taken for the whole blocking timeout."""


@dataclass(frozen=True)
class _Scripts:
    acquire_fenced: Script
    extend: Script
    delete_if_equal: Script


_REGISTERED: weakref.WeakKeyDictionary[redis.Redis, _Scripts] = weakref.WeakKeyDictionary()


def _scripts(client: redis.Redis) -> _Scripts:
    """The scripts registered on ``client``, once per client (registering hashes each script)."""
    scripts = _REGISTERED.get(client)
    if scripts is None:
        scripts = _REGISTERED[client] = _Scripts(
            acquire_fenced=client.register_script(ACQUIRE_FENCED),
            extend=client.register_script(EXTEND_IF_EQUAL),
            delete_if_equal=client.register_script(DELETE_IF_EQUAL),
        )
    return scripts


def delete_if_equal(client: redis.Redis, key: str, value: bytes | str | int) -> bool:
    """Delete ``key`` only if it still holds ``value``; True if it did."""
    return bool(_scripts(client).delete_if_equal(keys=[key], args=[value]))


class Lease:
    """A held lease: ``key`` holds ``token`` for ``ttl_ms`` unless extended. With a fencing counter
    (``fence_key``), ``token`` is a fencing token: larger for every later holder of the same key."""

    def __init__(self, client: redis.Redis, key: str, token: int | str, ttl_ms: int, *,
                 fence_key: str | None = None, fence_ttl_ms: int = 0) -> None:
        self._redis = client
        self.key = key
        self.token = token
        self.ttl_ms = ttl_ms
        self._fence_key = fence_key
        self._fence_ttl_ms = fence_ttl_ms

    def held(self) -> bool:
        raw = self._redis.get(self.key)
        return raw is not None and (raw.decode() if isinstance(raw, bytes) else raw) == str(self.token)

    def ensure(self) -> None:
        """Raise :class:`LeaseLost` unless still held: call it before a side effect."""
        if not self.held():
            raise LeaseLost(f"lost lease {self.key} (token {self.token})")

    def extend(self, ttl_ms: int | None = None) -> None:
        """Reset the TTL to ``ttl_ms`` (default: the original TTL); :class:`LeaseLost` if no longer held."""
        ttl = self.ttl_ms if ttl_ms is None else ttl_ms
        if self._fence_key is None:
            keys, args = [self.key], [self.token, ttl]
        else:  # the counter lives as long as its key is in use
            keys, args = [self.key, self._fence_key], [self.token, ttl, self._fence_ttl_ms]
        if not _scripts(self._redis).extend(keys=keys, args=args):
            raise LeaseLost(f"lost lease {self.key} (token {self.token})")

    def release(self) -> bool:
        """Give the lease up; False if it had already expired or passed to another holder."""
        return delete_if_equal(self._redis, self.key, self.token)

    def release_in(self, pipe: redis.client.Pipeline) -> None:
        """Stage the release in ``pipe``, after the writes the lease protects, in the same transaction.

        EVAL with the script's text, not EVALSHA: inside MULTI a script missing from Redis' cache (after
        a restart) would fail alone and leave the lease to its TTL; EVAL never misses.
        """
        pipe.eval(DELETE_IF_EQUAL, 1, self.key, self.token)

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Losing the lease is reported only when nothing else went wrong, so it never masks the error.
        if not self.release() and exc_type is None:
            raise LeaseLost(f"lease {self.key} (token {self.token}) expired before release")


def try_take(client: redis.Redis, key: str, ttl_ms: int) -> Lease | None:
    """Take the lease on ``key`` with a random token if it is free; never waits."""
    if ttl_ms < 1:
        raise ValueError(f"ttl_ms must be >= 1, got {ttl_ms}")
    token = f"{random.getrandbits(64):016x}"
    return Lease(client, key, token, ttl_ms) if client.set(key, token, nx=True, px=ttl_ms) else None


def try_fenced(client: redis.Redis, key: str, fence_key: str, ttl_ms: int, *, fence_ttl_ms: int,
               clock_ms: int) -> Lease | None:
    """Take the lease on ``key`` with the next fencing token of ``fence_key`` if it is free; never waits."""
    if ttl_ms < 1:
        raise ValueError(f"ttl_ms must be >= 1, got {ttl_ms}")
    token = _scripts(client).acquire_fenced(keys=[key, fence_key], args=[ttl_ms, fence_ttl_ms, clock_ms])
    if token is None:
        return None
    return Lease(client, key, int(token), ttl_ms, fence_key=fence_key, fence_ttl_ms=fence_ttl_ms)


def wait_for(take: Callable[[], Lease | None], *, timeout_s: float, poll_s: float, what: str) -> Lease:
    """Call ``take`` until it returns a lease, for up to ``timeout_s``; :class:`LeaseTimeout` after.

    Redis has no wake-up on expiry: waiters poll, jittered between ``poll_s``/2 and ``poll_s`` so they do
    not retry in lockstep.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        lease = take()
        if lease is not None:
            return lease
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LeaseTimeout(f"{what} still taken after {timeout_s:g} s")
        time.sleep(min(remaining, random.uniform(poll_s / 2, poll_s)))
