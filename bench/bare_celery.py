"""The baseline of bench_pipeline.py: a bare Celery task that makes the same single emulator call
Parley's message.send makes (POST agentless), with a token fetched once, and nothing else."""

from __future__ import annotations

import os
import time
from functools import cache

import httpx
import redis
from celery import Celery

app = Celery("bare", broker=os.environ.get("PARLEY_REDIS_URL"))
app.conf.update(task_ignore_result=True, worker_prefetch_multiplier=1, task_acks_late=True,
                worker_hijack_root_logger=False)
DONE = "bench:bare:done"


@cache
def _http() -> tuple[httpx.Client, redis.Redis]:
    api = os.environ["PARLEY_GENESYS_API_URL"]
    token = httpx.post(f"{api}/oauth/token", data={"grant_type": "client_credentials"},
                       auth=(os.environ["PARLEY_GENESYS_CLIENT_ID"], os.environ["PARLEY_GENESYS_CLIENT_SECRET"])
                       ).json()["access_token"]
    client = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"})
    return client, redis.Redis.from_url(os.environ["PARLEY_REDIS_URL"])


@app.task(name="bench.bare_send")
def bare_send(body: dict, submitted_at: float) -> None:
    client, r = _http()
    client.post("/api/v2/conversations/messages/agentless", json=body).raise_for_status()
    done = time.time()
    r.rpush(DONE, f"{done - submitted_at} {done}")  # latency, and when it was done (bench_pipeline's open loop)
