"""A command's execution lease, renewed while it runs: one execution of a command at a time, fleet-wide.

The lease (a :class:`parley.leases.Lease` with a random token, taken by :meth:`parley.records.Records.begin`)
is short and renewed while the command runs, so a worker that dies frees it within one TTL instead of
one task time limit. One keeper thread per process renews every live lease (a thread per task would
cost more than the renewals). Losing the lease (a pause longer than the TTL) is detected on renewal and
sets :attr:`RenewedLease.lost`; the guarantee comes from the command record and lookup-before-act.
"""

from __future__ import annotations

import threading
import uuid

import redis

from parley.leases import Lease, LeaseLost


class RenewedLease(Lease):
    def __init__(self, client: redis.Redis, key: str, ttl_ms: int) -> None:
        super().__init__(client, key, uuid.uuid4().hex, ttl_ms)
        self.lost = threading.Event()

    def keep_renewing(self) -> None:
        """Renew from now on (the lease was taken with :attr:`token`)."""
        _keeper().add(self)

    def stop_renewing(self) -> None:
        """Forget the lease without a Redis call: something else deleted it (the command's last transaction)."""
        _keeper().discard(self)

    def release(self) -> bool:
        _keeper().discard(self)
        try:
            return super().release()
        except redis.RedisError:
            return False  # Redis is away: the TTL frees the lease


class _Keeper:
    """Renews every registered lease each third of its TTL, from one daemon thread."""

    def __init__(self) -> None:
        self._leases: dict[int, RenewedLease] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        threading.Thread(target=self._run, name="lease-keeper", daemon=True).start()

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
            lease.extend()
        except LeaseLost:
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
