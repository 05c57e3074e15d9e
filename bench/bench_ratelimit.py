"""Fleet rate limiter: 4 processes offering 3x the limit for a while, against an independent counter.

Each process runs threads that ask the shared limiter (genesys.ratelimit, one real redis-server)
for slots at 3x the limit in total. Every admission is recorded in a separate Redis sorted set (the
"counter", timestamped by the admitting process after acquire returns, i.e. including scheduling
jitter, as Genesys would see arrivals). Reported:

- share of budget used: admitted / (limit * minutes)  (target >= 95%)
- would-be 429s: admissions that found ``limit`` others already in the 60 s sliding window before
  them, the strictest reading of "300 per minute"; and the worst fixed minute (target 0)

    .venv/bin/python bench/bench_ratelimit.py                       # 60 s at 600/min
    .venv/bin/python bench/bench_ratelimit.py --seconds 120 --limit 300
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import results
from genesys.effects import SyncRunner
from genesys.keys import ClientKeys
from genesys.ratelimit import RateLimiter
from parley.app.redis_server import RedisServer

COUNTER = "bench:ratelimit:admitted"
OFFERED = "bench:ratelimit:offered"
KEYS = ClientKeys.for_client("http://bench", "bench-client")


def worker(redis_url: str, limit: int, per_thread_rate: float, threads: int, seconds: float,
           ready: Any, go: Any, clock: Any) -> None:
    limiter = RateLimiter(KEYS.rate, KEYS.pause, limit)
    # The clock starts once every process is up (spawned processes import for seconds on a busy
    # machine): a process still importing would otherwise count as budget the limiter left unused.
    ready.release()
    go.wait()
    start = clock.value
    until = start + seconds

    def offer() -> None:
        client = redis.Redis.from_url(redis_url)
        runner = SyncRunner(client)
        next_offer = start
        while True:
            now = time.time()
            if now < next_offer:
                time.sleep(next_offer - now)  # pacing the offered load, not waiting on an event
            if time.time() >= until:
                return
            # The schedule runs on while we wait for a slot: demand stays 3x, the backlog grows.
            next_offer += 1 / per_thread_rate
            client.incr(OFFERED)
            runner.run(limiter.plan_acquire())
            admitted = time.time()
            if admitted < until:
                client.zadd(COUNTER, {uuid.uuid4().hex: admitted})

    pool = [threading.Thread(target=offer) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def would_be_429s(times: list[float], limit: int, window: float = 60.0) -> int:
    """Admissions arriving when ``limit`` others are already inside the preceding window."""
    rejected, left = 0, 0
    for right, t in enumerate(times):
        while times[left] <= t - window:
            left += 1
        if right - left >= limit:
            rejected += 1
    return rejected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--limit", type=int, default=600, help="requests per minute (Genesys: 300)")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4, help="threads per process")
    parser.add_argument("--overload", type=float, default=3.0, help="offered load / limit")
    parser.add_argument("--redis-url", default=None, help="default: a fresh embedded redis-server")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (bench/results.py)")
    args = parser.parse_args()
    run = results.RunInfo.start()

    with tempfile.TemporaryDirectory() as tmp:
        server = None
        url = args.redis_url
        if url is None:
            server = RedisServer(Path(tmp), appendonly=False).start()
            url = server.url
        try:
            client = redis.Redis.from_url(url)
            client.delete(COUNTER, OFFERED, KEYS.rate, KEYS.pause)
            per_thread = args.overload * args.limit / 60 / (args.processes * args.threads)
            ctx = multiprocessing.get_context("spawn")
            ready, go, clock = ctx.Semaphore(0), ctx.Event(), ctx.Value("d", 0.0)
            procs = [
                ctx.Process(target=worker,
                            args=(url, args.limit, per_thread, args.threads, args.seconds, ready, go, clock))
                for _ in range(args.processes)
            ]
            for p in procs:
                p.start()
            for _ in procs:
                ready.acquire()  # every process is up
            start = time.time() + 0.2
            clock.value = start
            go.set()
            for p in procs:
                p.join()
            times = sorted(t for _, t in client.zrange(COUNTER, 0, -1, withscores=True))
            offered = int(client.get(OFFERED) or 0)
        finally:
            if server is not None:
                server.stop()

    minutes = args.seconds / 60
    budget = args.limit * minutes
    fixed = [sum(1 for t in times if start + i * 60 <= t < start + (i + 1) * 60) for i in range(int(minutes) or 1)]
    limiter = RateLimiter(KEYS.rate, KEYS.pause, args.limit)
    print(f"limit {args.limit}/min, {args.processes} processes x {args.threads} threads, {args.seconds:.0f} s")
    demand = args.overload * budget
    print(f"offered      {demand:.0f} scheduled ({args.overload:.1f}x the budget); {offered} reached acquire")
    print(f"admitted     {len(times)} of a budget of {budget:.0f}")
    print(f"limiter      burst {limiter.burst}, slot {limiter.interval_ms:.1f} ms")
    print(f"fixed minutes {fixed}")
    print(f"would-be 429s (sliding 60 s window): {would_be_429s(times, args.limit)}")
    print(f"share of budget used: {len(times) / budget:.3f}")
    results.write(args.json, results.RateLimitResult(
        run=run.finish(), limit_per_minute=args.limit, processes=args.processes, threads=args.threads,
        seconds=args.seconds, overload=args.overload, offered_scheduled=round(demand, 1), reached_acquire=offered,
        admitted=len(times), budget=round(budget, 1), fixed_minutes=fixed,
        would_be_429s=would_be_429s(times, args.limit),
        budget_share=round(len(times) / budget, 4), admitted_times_s=[round(t - start, 3) for t in times]))


if __name__ == "__main__":
    main()
