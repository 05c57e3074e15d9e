"""Redis connections: one factory so every process talks to Redis the same way."""

from __future__ import annotations

import redis

from parley.settings import Settings


class RedisNotConfigured(RuntimeError):
    pass


def redis_url(settings: Settings) -> str:
    if not settings.redis_url:
        raise RedisNotConfigured(
            "PARLEY_REDIS_URL is not set: point it at a Redis, or use `parley run`, which starts one"
        )
    return settings.redis_url


def connect(settings: Settings, *, decode: bool = True) -> redis.Redis:
    """A client with timeouts and retry on transient errors; health-checked when idle."""
    return redis.Redis.from_url(
        redis_url(settings),
        decode_responses=decode,
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=15,
        retry_on_timeout=True,
    )
