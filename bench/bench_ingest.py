"""Ingestion throughput: XADD -> Celery task start, against bare XADD + XREADGROUP + XACK.

Both run against the same real redis-server in the same invocation, alternating rounds, and the
report is the ratio of medians. Parley's side runs `parley ingest` and a real `celery worker`
subprocess whose handler only records that it ran (harness/celery_app.py).

    .venv/bin/python bench/bench_ingest.py --commands 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import results
from harness.celery_app import EXECUTIONS
from harness.processes import parley_env, running, start_celery, start_ingest
from parley.app.redis_server import RedisServer


def command(i: int, run: int) -> str:
    # One conversation per command: commands on one conversation run one at a time (README, Order), and this
    # measures ingestion, not one conversation's queue.
    return json.dumps({"type": "cobrowse.start", "idempotency_key": f"b{run}-{i}",
                       "conversation_id": str(uuid.UUID(int=run * 1_000_000 + i))})


def baseline(client: redis.Redis, n: int, run: int) -> float:
    stream, group = f"bench:bare:{run}", "g"
    client.xgroup_create(stream, group, id="0", mkstream=True)
    start = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(stream, {"command": command(i, run)})
    pipe.execute()
    done = 0
    while done < n:
        reply = client.xreadgroup(group, "c", {stream: ">"}, count=64, block=1000)
        for _s, rows in reply or []:
            client.xack(stream, group, *[r[0] for r in rows])
            done += len(rows)
    return n / (time.perf_counter() - start)


def parley(client: redis.Redis, n: int, run: int) -> float:
    target = client.hlen(EXECUTIONS) + n
    pipe = client.pipeline(transaction=False)
    start = time.perf_counter()
    for i in range(n):
        pipe.xadd("parley:commands", {"command": command(i, run)})
    pipe.execute()
    while client.hlen(EXECUTIONS) < target:
        client.xread({"parley:events": "$"}, block=20)  # wake on new events rather than sleep
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (bench/results.py)")
    args = parser.parse_args()
    run_info = results.RunInfo.start()
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        env = parley_env(server.url)
        ingest, celery = start_ingest(env), start_celery(env, concurrency=args.concurrency)
        with running(ingest, celery):
            parley(client, 50, 1000)  # warm up both processes
            bare, full = [], []
            for run in range(args.rounds):
                bare.append(baseline(client, args.commands, run))
                full.append(parley(client, args.commands, run))
        b, p = statistics.median(bare), statistics.median(full)
        print(f"commands per round: {args.commands}, rounds: {args.rounds}, celery concurrency: {args.concurrency}")
        print(f"baseline XADD+XREADGROUP+XACK: {b:,.0f}/s   rounds {[round(x) for x in bare]}")
        print(f"parley XADD -> task started:   {p:,.0f}/s   rounds {[round(x) for x in full]}")
        print(f"ratio parley/baseline: {p / b:.3f}")
    results.write(args.json, results.IngestResult(
        run=run_info.finish(), commands_per_round=args.commands, rounds=args.rounds, concurrency=args.concurrency,
        baseline_per_s=[round(x, 1) for x in bare], parley_per_s=[round(x, 1) for x in full],
        baseline_median_per_s=round(b, 1), parley_median_per_s=round(p, 1), ratio=round(p / b, 3)))


if __name__ == "__main__":
    main()
