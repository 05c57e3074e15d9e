"""`parley health COMPONENT`: does the component running on this host consume? For container health
checks (compose.yaml), so an orchestrator restarts a worker that is alive but stuck, not only one
that died.

Each check proves consumption, scoped to this host:

* ingest, the webhook relay and a guest worker write a heartbeat (a key with a short TTL) from the
  loop that reads their input, each time round it; a loop that is stuck stops writing it;
* a Celery worker answers a ping on its own control queue (``-n parley@%h``), which only a worker
  whose consumer is connected and draining messages can do.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Literal

import redis

from parley import keys

Component = Literal["ingest", "webhook", "guest", "celery"]


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


def check(component: Component, client: redis.Redis, host: str | None = None) -> Health:
    host = host or socket.gethostname()
    if component == "celery":
        return _celery(host)
    alive = list(client.scan_iter(keys.heartbeat(component, f"{host}-*"), count=100))
    return Health(bool(alive), f"{len(alive)} {component} heartbeat(s) from {host}")


def _celery(host: str) -> Health:
    from tasks.app import app

    node = f"parley@{host}"
    replies = app.control.ping(destination=[node], timeout=3.0)
    return Health(bool(replies), f"{node} answered a ping" if replies else f"{node} did not answer a ping")
