"""message.send through the whole pipeline vs a bare Celery task making the same single emulator call.

Same redis-server, same emulator (its rate limit lifted, and Parley's too), same Celery concurrency,
alternating rounds in one invocation. Parley's path: XADD -> ingest (validate, idempotency claim,
events) -> Celery -> runner (record, lease) -> handler (customer lease, state cache) -> emulator ->
events. The baseline: apply_async -> Celery -> one POST. Reports the throughput ratio and the
latency each command adds (p50, p99 of submit -> done).

    .venv/bin/python bench/bench_pipeline.py --commands 500 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bare_celery import DONE  # noqa: E402
from parley.redis_server import RedisServer  # noqa: E402
from tests.support.emulator_server import running_emulator  # noqa: E402
from tests.support.processes import parley_env, running, start_celery, start_ingest  # noqa: E402

DEPLOYMENT = "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607"


def body(customer: str) -> dict:
    return {"fromAddress": DEPLOYMENT, "toAddressMessengerType": "webmessaging", "externalContactId": customer,
            "textBody": "Your order shipped"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bare_round(client: redis.Redis, n: int) -> tuple[float, list[float]]:
    from bench.bare_celery import bare_send

    client.delete(DONE)
    start = time.perf_counter()
    for _ in range(n):
        bare_send.apply_async(args=[body(str(uuid.uuid4())), time.time()], queue="bench.bare")
    while client.llen(DONE) < n:
        client.blpop("bench:never", timeout=0.02)  # a bounded wait on Redis instead of sleep
    elapsed = time.perf_counter() - start
    return n / elapsed, [float(x) for x in client.lrange(DONE, 0, -1)]


def parley_round(client: redis.Redis, n: int) -> tuple[float, list[float]]:
    submitted: dict[str, float] = {}
    last = client.xrevrange("parley:events", count=1)
    cursor = last[0][0] if last else "0"
    start = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for _ in range(n):
        key = uuid.uuid4().hex
        submitted[key] = time.time()
        pipe.xadd("parley:commands", {"command": json.dumps({
            "type": "message.send", "idempotency_key": key, "channel": "webmessaging", "from_address": DEPLOYMENT,
            "external_contact_id": str(uuid.uuid4()), "text": "Your order shipped"})})
    pipe.execute()
    latencies: list[float] = []
    while len(latencies) < n:
        for _s, rows in client.xread({"parley:events": cursor}, block=1000, count=1000) or []:
            for entry_id, fields in rows:
                cursor = entry_id
                event = json.loads(fields["event"])
                if event["type"] == "command.succeeded" and event["idempotency_key"] in submitted:
                    done_at = datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp()
                    latencies.append(done_at - submitted[event["idempotency_key"]])
                elif event["type"] == "command.failed":
                    raise SystemExit(f"command failed: {event}")
    elapsed = time.perf_counter() - start
    return n / elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--genesys-latency-ms", type=int, default=0,
                        help="Emulator latency on the agentless call (real Genesys answers in ~100 ms+).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as server, \
            running_emulator({"PARLEY_EMULATOR_RATE_LIMIT_ENABLED": "false"}) as emulator:
        import httpx

        fixtures = httpx.get(f"{emulator.base_url}/__emulator/fixtures").json()
        env = parley_env(server.url, PARLEY_GENESYS_API_URL=emulator.base_url,
                         PARLEY_GENESYS_CLIENT_ID=fixtures["client_id"],
                         PARLEY_GENESYS_CLIENT_SECRET=fixtures["client_secret"],
                         PARLEY_GENESYS_RATE_LIMIT_PER_MINUTE="100000000")
        import os

        os.environ.update({k: env[k] for k in ("PARLEY_REDIS_URL", "PARLEY_GENESYS_API_URL",
                                               "PARLEY_GENESYS_CLIENT_ID", "PARLEY_GENESYS_CLIENT_SECRET")})
        from bench import bare_celery

        bare_celery.app.conf.broker_url = server.url
        client = redis.Redis.from_url(server.url, decode_responses=True)
        ingest = start_ingest(env)
        parley_worker = start_celery(env, app="tasks.app", concurrency=args.concurrency)
        bare_worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench.bare_celery", "worker", "-Q", "bench.bare",
             "-c", str(args.concurrency), "--loglevel", "WARNING", "-n", "bare@%h"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if args.genesys_latency_ms:
            httpx.post(f"{emulator.base_url}/__emulator/faults", json={
                "method": "POST", "path": "/api/v2/conversations/messages/agentless",
                "latency_ms": args.genesys_latency_ms}).raise_for_status()
        with running(ingest, parley_worker, bare_worker):
            bare_round(client, 50)  # warm up: imports, tokens, pools
            parley_round(client, 50)
            bare_tp, parley_tp, bare_lat, parley_lat = [], [], [], []
            for _ in range(args.rounds):
                bare_tp.append(bare_round(client, args.commands)[0])
                parley_tp.append(parley_round(client, args.commands)[0])
            # Latency one command at a time (no queueing): what each command costs end to end.
            for _ in range(args.latency_samples):
                bare_lat += bare_round(client, 1)[1]
                parley_lat += parley_round(client, 1)[1]
    b, p = statistics.median(bare_tp), statistics.median(parley_tp)
    print(f"commands per round: {args.commands}, rounds: {args.rounds}, celery concurrency: {args.concurrency}, "
          f"latency samples (one at a time): {args.latency_samples}, emulator latency: {args.genesys_latency_ms} ms")
    print(f"bare Celery task + 1 POST: {b:7.1f}/s  rounds {[round(x, 1) for x in bare_tp]}")
    print(f"parley message.send:       {p:7.1f}/s  rounds {[round(x, 1) for x in parley_tp]}")
    print(f"throughput ratio parley/bare: {p / b:.3f}")
    for name, values in (("bare", bare_lat), ("parley", parley_lat)):
        print(f"latency {name:<6} p50 {pct(values, 0.5) * 1000:7.1f} ms  p99 {pct(values, 0.99) * 1000:7.1f} ms")
    print(f"added by parley: p50 {(pct(parley_lat, 0.5) - pct(bare_lat, 0.5)) * 1000:.1f} ms, "
          f"p99 {(pct(parley_lat, 0.99) - pct(bare_lat, 0.99)) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
