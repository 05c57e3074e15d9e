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
from redis.commands.core import Script

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


_SCRIPTS: dict[int, tuple[Script, Script]] = {}


def _scripts(client: redis.Redis) -> tuple[Script, Script]:
    """The lease scripts, registered once per Redis client (registering hashes the script)."""
    key = id(client)
    if key not in _SCRIPTS:
        _SCRIPTS[key] = (client.register_script(_RENEW), client.register_script(_RELEASE))
    return _SCRIPTS[key]


class RenewedLease:
    def __init__(self, client: redis.Redis, key: str, ttl_ms: int) -> None:
        self._client = client
        self.key = key
        self.ttl_ms = ttl_ms
        self._token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = threading.Event()
        self._renew, self._release = _scripts(client)

    @property
    def token(self) -> str:
        return self._token

    def try_acquire(self) -> bool:
        if not self._client.set(self.key, self._token, nx=True, px=self.ttl_ms):
            return False
        self.keep_renewing()
        return True

    def keep_renewing(self) -> None:
        """Renew in the background from now on (the lease was taken with :attr:`token`)."""
        self._thread = threading.Thread(target=self._keep, name=f"lease:{self.key}", daemon=True)
        self._thread.start()

    def remaining_ms(self) -> int:
        return max(0, int(self._client.pttl(self.key)))

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self._renew(keys=[self.key], args=[self._token, self.ttl_ms], client=self._client):
                    self.lost.set()
                    return
            except redis.RedisError:
                continue  # Redis briefly away: the next tick retries; the TTL covers the gap

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError):  # if Redis is away, the TTL frees the lease
            self._release(keys=[self.key], args=[self._token], client=self._client)
