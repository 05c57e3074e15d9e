"""`parley status`: is every component up and consuming? Probes by consumption, not by ping."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import redis
from pydantic import BaseModel

from parley import keys, metrics
from parley.settings import Settings


class ComponentStatus(BaseModel):
    name: str
    up: bool
    detail: str


class Status(BaseModel):
    components: list[ComponentStatus]
    commands_pending: int
    commands_lag: int | None
    celery_queue_depth: int
    guest_commands: int
    dead_letters: int

    @property
    def healthy(self) -> bool:
        return all(c.up for c in self.components)


def _ingest(client: redis.Redis) -> ComponentStatus:
    alive = list(client.scan_iter(keys.heartbeat_pattern("ingest"), count=100))
    return ComponentStatus(name="ingest", up=bool(alive), detail=f"{len(alive)} consumer(s) reading")


def _celery(client: redis.Redis, timeout_s: float) -> ComponentStatus:
    """Enqueue a probe task and wait for a worker to run it: proves the worker consumes."""
    from tasks.commands import probe

    nonce = uuid.uuid4().hex
    probe.apply_async(args=[nonce], queue=keys.CELERY_QUEUE, expires=timeout_s + 5)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.exists(keys.probe(nonce)):
            client.delete(keys.probe(nonce))
            return ComponentStatus(name="celery", up=True, detail="a worker ran a probe task")
        time.sleep(0.1)  # polling Redis for the probe's mark; status is a one-shot CLI
    return ComponentStatus(name="celery", up=False, detail=f"no worker ran a probe task within {timeout_s:.0f}s")


def _http(name: str, url: str) -> ComponentStatus:
    try:
        response = httpx.get(url, timeout=3)
        return ComponentStatus(name=name, up=response.status_code < 500, detail=f"{url} -> {response.status_code}")
    except httpx.HTTPError as exc:
        return ComponentStatus(name=name, up=False, detail=f"{url} unreachable: {type(exc).__name__}")


def collect(client: redis.Redis, settings: Settings, probe_timeout_s: float = 10.0) -> Status:
    components = [_ingest(client), _celery(client, probe_timeout_s)]
    for name, raw in sorted(client.hgetall(keys.COMPONENTS_HASH).items()):
        info = json.loads(raw)
        if "health_url" in info:
            components.append(_http(name, info["health_url"]))
        elif "heartbeat" in info:
            alive = list(client.scan_iter(keys.heartbeat_pattern(info["heartbeat"]), count=100))
            components.append(ComponentStatus(name=name, up=bool(alive), detail=f"{len(alive)} instance(s)"))
    lag = None
    pending = 0
    try:
        for group in client.xinfo_groups(settings.commands_stream):
            if group["name"] == settings.consumer_group:
                pending = int(group["pending"])
                lag = group.get("lag")
    except redis.ResponseError:
        pass  # no stream yet
    return Status(
        components=components,
        commands_pending=pending,
        commands_lag=lag,
        celery_queue_depth=metrics.queue_depth(client),
        guest_commands=int(client.xlen(keys.GUEST_COMMANDS_STREAM)),
        dead_letters=int(client.xlen(settings.dead_stream)),
    )
