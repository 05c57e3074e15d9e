"""A renewed, token-checked Redis lease: one execution of a command at a time, fleet-wide.

The lease is short and renewed by a background thread while the command runs, so a worker that
dies frees it within one TTL instead of one task time limit. Losing the lease (a pause longer than
the TTL) is detected on renewal; Genesys cannot check fencing tokens, so the lease is an
optimisation and the guarantee comes from the command record and lookup-before-act.
"""

from __future__ import annotations

import contextlib
import threading
import uuid

import redis

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
        self._client = client
        self.key = key
        self.ttl_ms = ttl_ms
        self._token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = threading.Event()
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def try_acquire(self) -> bool:
        if not self._client.set(self.key, self._token, nx=True, px=self.ttl_ms):
            return False
        self._thread = threading.Thread(target=self._keep, name=f"lease:{self.key}", daemon=True)
        self._thread.start()
        return True

    def remaining_ms(self) -> int:
        return max(0, int(self._client.pttl(self.key)))

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self._renew(keys=[self.key], args=[self._token, self.ttl_ms]):
                    self.lost.set()
                    return
            except redis.RedisError:
                continue  # Redis briefly away: the next tick retries; the TTL covers the gap

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError):  # if Redis is away, the TTL frees the lease
            self._release(keys=[self.key], args=[self._token])
