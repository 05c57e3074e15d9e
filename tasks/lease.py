"""A renewed, token-checked Redis lease: one execution of a command at a time, fleet-wide.

The lease is short and renewed while the command runs, so a worker that dies frees it within one
TTL instead of one task time limit. One keeper thread per process renews every live lease (a thread
per task would cost more than the renewals). Losing the lease (a pause longer than the TTL) is
detected on renewal; Genesys cannot check fencing tokens, so the lease is an optimisation and the
guarantee comes from the command record and lookup-before-act.
"""

from __future__ import annotations

import contextlib
import threading
import uuid

import redis
from redis.commands.core import Script

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RenewedLease:
    def __init__(self, client: redis.Redis, key: str, ttl_ms: int) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = ttl_ms
        self.token = uuid.uuid4().hex
        self.lost = threading.Event()

    def try_acquire(self) -> bool:
        if not self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return False
        self.keep_renewing()
        return True

    def remaining_ms(self) -> int:
        return max(0, int(self.client.pttl(self.key)))

    def keep_renewing(self) -> None:
        """Renew from now on (the lease was taken with :attr:`token`)."""
        _keeper().add(self)

    def stop_renewing(self) -> None:
        """Forget the lease without a Redis call: something else deleted it (the command's last transaction)."""
        _keeper().discard(self)

    def release(self) -> None:
        _keeper().discard(self)
        with contextlib.suppress(redis.RedisError):  # if Redis is away, the TTL frees the lease
            _keeper().scripts(self.client)[1](keys=[self.key], args=[self.token], client=self.client)


class _Keeper:
    """Renews every registered lease each third of its TTL, from one daemon thread."""

    def __init__(self) -> None:
        self._leases: dict[int, RenewedLease] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._scripts: dict[int, tuple[Script, Script]] = {}
        threading.Thread(target=self._run, name="lease-keeper", daemon=True).start()

    def scripts(self, client: redis.Redis) -> tuple[Script, Script]:
        key = id(client)
        if key not in self._scripts:  # registering hashes the script: once per client
            self._scripts[key] = (client.register_script(_RENEW), client.register_script(_RELEASE))
        return self._scripts[key]

    def add(self, lease: RenewedLease) -> None:
        with self._lock:
            self._leases[id(lease)] = lease

    def discard(self, lease: RenewedLease) -> None:
        with self._lock:
            self._leases.pop(id(lease), None)

    def _run(self) -> None:
        while True:
            with self._lock:
                leases = list(self._leases.values())
            interval = min((lease.ttl_ms for lease in leases), default=3000) / 3000
            self._wake.wait(interval)
            for lease in leases:
                self._renew(lease)

    def _renew(self, lease: RenewedLease) -> None:
        try:
            renew = self.scripts(lease.client)[0]
            if not renew(keys=[lease.key], args=[lease.token, lease.ttl_ms], client=lease.client):
                lease.lost.set()
                self.discard(lease)
        except redis.RedisError:
            pass  # Redis briefly away: the next round retries; the TTL covers the gap


_KEEPER: _Keeper | None = None
_KEEPER_LOCK = threading.Lock()


def _keeper() -> _Keeper:
    """The process's keeper, started on first use (after a fork, so each pool process has its own)."""
    global _KEEPER
    with _KEEPER_LOCK:
        if _KEEPER is None:
            _KEEPER = _Keeper()
        return _KEEPER
