"""Plans and the two runners that carry them out (sync and asyncio).

The token cache, the rate limiter and the request pipeline are written once, as generators
("plans") that *yield* what they need done — a Redis command, an HTTP exchange, a pause — and
receive the result. :class:`SyncRunner` performs those effects with ``redis.Redis``, ``httpx.Client``
and ``time.sleep``; :class:`AsyncRunner` with ``redis.asyncio.Redis``, ``httpx.AsyncClient`` and
``asyncio.sleep``. So the Celery tasks (sync) and the guest worker (asyncio) share every line of
logic and differ only in these two small loops; tests can also run a plan with a fake runner that
records pauses instead of sleeping.

A failing effect is thrown back into the plan, so a plan can clean up (release a lock) and map the
exception to a typed error.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import redis
import redis.asyncio
import redis.exceptions

T = TypeVar("T")


@dataclass(frozen=True)
class RedisCommand:
    """A redis-py method call, e.g. ``RedisCommand("set", (key, value), {"px": 1000})``."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpExchange:
    """Send a request and read the whole response."""

    request: httpx.Request


@dataclass(frozen=True)
class Pause:
    seconds: float


Effect = RedisCommand | HttpExchange | Pause
Plan = Generator[Effect, Any, T]


class SyncRunner:
    def __init__(self, redis_client: redis.Redis, http: httpx.Client | None = None) -> None:
        self._redis = redis_client
        self._http = http  # None: a runner for Redis-only plans (the rate limiter on its own)

    def run(self, plan: Plan[T]) -> T:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = plan.throw(error) if error is not None else plan.send(value)
            except StopIteration as done:
                return done.value
            value, error = None, None
            try:
                value = self._perform(effect)
            except BaseException as exc:  # handed to the plan, which re-raises what it does not handle
                error = exc

    def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, RedisCommand):
            return getattr(self._redis, effect.name)(*effect.args, **effect.kwargs)
        if isinstance(effect, HttpExchange):
            if self._http is None:
                raise RuntimeError("this runner has no HTTP client")
            return self._http.send(effect.request)
        time.sleep(effect.seconds)
        return None


class AsyncRunner:
    def __init__(self, redis_client: redis.asyncio.Redis, http: httpx.AsyncClient | None = None) -> None:
        self._redis = redis_client
        self._http = http

    async def run(self, plan: Plan[T]) -> T:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = plan.throw(error) if error is not None else plan.send(value)
            except StopIteration as done:
                return done.value
            value, error = None, None
            try:
                value = await self._perform(effect)
            except BaseException as exc:  # incl. CancelledError: the plan releases its lock, re-raises
                error = exc

    async def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, RedisCommand):
            return await getattr(self._redis, effect.name)(*effect.args, **effect.kwargs)
        if isinstance(effect, HttpExchange):
            if self._http is None:
                raise RuntimeError("this runner has no HTTP client")
            return await self._http.send(effect.request)
        await asyncio.sleep(effect.seconds)
        return None


def text(value: Any) -> str | None:
    """A Redis reply as ``str`` whether or not the client decodes responses."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class LuaScript:
    source: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()

    def call(self, keys: tuple[str, ...], args: tuple[Any, ...]) -> Plan[Any]:
        """EVALSHA, loading the script on first use (saves sending the source on every call)."""
        try:
            return (yield RedisCommand("evalsha", (self.sha, len(keys), *keys, *args)))
        except redis.exceptions.NoScriptError:
            return (yield RedisCommand("eval", (self.source, len(keys), *keys, *args)))
