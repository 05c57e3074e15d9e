"""Await events on parley:events with XREAD BLOCK (no sleeping, no polling loops)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis

EVENTS = "parley:events"


def read_events(client: redis.Redis, since: str = "0") -> list[dict[str, Any]]:
    return [json.loads(f["event"]) for _id, f in client.xrange(EVENTS, min=since if since != "0" else "-")]


def await_events(client: redis.Redis, predicate: Callable[[list[dict[str, Any]]], bool],
                 timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Block on the events stream until ``predicate(all events so far)`` holds; fail after timeout."""
    seen: list[dict[str, Any]] = []
    last = "0"
    deadline = time.monotonic() + timeout_s
    while not predicate(seen):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            types: dict[str, int] = {}
            for e in seen:
                types[e["type"]] = types.get(e["type"], 0) + 1
            raise AssertionError(f"timed out after {timeout_s}s waiting for events; seen {types}")
        reply = client.xread({EVENTS: last}, count=1000, block=max(1, int(min(remaining, 1.0) * 1000)))
        for _stream, rows in reply or []:
            for entry_id, fields in rows:
                last = entry_id
                seen.append(json.loads(fields["event"]))
    return seen


def count(events: list[dict[str, Any]], kind: str) -> int:
    return sum(1 for e in events if e["type"] == kind)
