"""message.send through the whole pipeline vs a bare Celery task making the same single emulator call.

Same redis-server, same emulator (its rate limit lifted, and Parley's too), same Celery concurrency,
alternating rounds in one invocation. Parley's path: XADD -> ingest (validate, idempotency claim,
events) -> Celery -> runner (record, lease) -> handler (customer lease, state cache) -> emulator ->
events. The baseline: apply_async -> Celery -> one POST. Reports the throughput ratio and the
latency each command adds (p50, p99 of submit -> done).

Then, at one Genesys latency (``--load-latency-ms``), an open loop on each side in turn: commands
submitted at a steady offered load (``--load-rates`` per second, ``--load-seconds`` each), reporting
the throughput achieved and the latency (submit -> done, p50 and p99) against the load offered. Past
what a side can carry its throughput flattens and its latency grows with the backlog.

    .venv/bin/python bench/bench_pipeline.py --commands 500 --rounds 3
    .venv/bin/python bench/bench_pipeline.py --load-rates 25,50,100 --load-seconds 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import results  # noqa: E402
from bench.bare_celery import DONE  # noqa: E402
from harness.emulator_server import running_emulator  # noqa: E402
from harness.processes import parley_env, running, start_celery, start_ingest  # noqa: E402
from parley.app.redis_server import RedisServer  # noqa: E402

DEPLOYMENT = "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607"


def body(customer: str) -> dict:
    return {"fromAddress": DEPLOYMENT, "toAddressMessengerType": "webmessaging", "externalContactId": customer,
            "textBody": "Your order shipped"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class CpuMeter:
    """CPU seconds (user + system) spent by each named process tree, so a run says where the time goes."""

    def __init__(self, processes: dict[str, int]) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in processes.items()}
        self.spent: dict[str, float] = dict.fromkeys(processes, 0.0)

    def _now(self) -> dict[str, float]:
        totals = {}
        for name, proc in self.processes.items():
            # The bench's own children are the servers and workers measured on their own lines.
            tree = [proc] if proc.pid == os.getpid() else [proc, *proc.children(recursive=True)]
            totals[name] = sum(sum(p.cpu_times()[:2]) for p in tree if p.is_running())
        return totals

    def measure(self, fn, *args):  # type: ignore[no-untyped-def]
        before = self._now()
        result = fn(*args)
        after = self._now()
        for name in self.spent:
            self.spent[name] += max(0.0, after[name] - before[name])
        return result


def bare_round(client: redis.Redis, n: int) -> tuple[float, list[float]]:
    from bench.bare_celery import bare_send

    client.delete(DONE)
    start = time.perf_counter()
    for _ in range(n):
        bare_send.apply_async(args=[body(str(uuid.uuid4())), time.time()], queue="bench.bare")
    while client.llen(DONE) < n:
        client.blpop("bench:never", timeout=0.02)  # a bounded wait on Redis instead of sleep
    elapsed = time.perf_counter() - start
    return n / elapsed, [float(x.split()[0]) for x in client.lrange(DONE, 0, -1)]


def send_command(key: str) -> str:
    return json.dumps({"type": "message.send", "idempotency_key": key, "channel": "webmessaging",
                       "from_address": DEPLOYMENT, "external_contact_id": str(uuid.uuid4()),
                       "text": "Your order shipped"})


def parley_round(client: redis.Redis, n: int) -> tuple[float, list[float]]:
    submitted: dict[str, float] = {}
    last = client.xrevrange("parley:events", count=1)
    cursor = last[0][0] if last else "0"
    start = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for _ in range(n):
        key = uuid.uuid4().hex
        submitted[key] = time.time()
        pipe.xadd("parley:commands", {"command": send_command(key)})
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


def paced(n: int, rate: float, submit) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Call ``submit(i)`` for i < n at ``rate`` per second (open loop: a slow side does not slow the
    offer); the wall-clock times of the first and last submission."""
    began = time.monotonic()
    first = time.time()
    for i in range(n):
        if (wait := began + i / rate - time.monotonic()) > 0:
            time.sleep(wait)  # pacing the offered load, not waiting on an event
        submit(i)
    return first, time.time()


def load_side(first: float, last_submit: float, n: int, done: list[tuple[float, float]]) -> results.LoadSide:
    """``done``: (latency s, done at) per completed command."""
    end = max((at for _lat, at in done), default=last_submit)
    lat = [x for x, _at in done]
    return results.LoadSide(
        submitted=n, completed=len(done), offered_actual_per_s=round(n / max(last_submit - first, 1e-3), 1),
        throughput_per_s=round(len(done) / max(end - first, 1e-3), 1),
        latency=results.Percentiles(n=len(lat), p50_ms=round(pct(lat, 0.5) * 1000, 1) if lat else float("nan"),
                                    p99_ms=round(pct(lat, 0.99) * 1000, 1) if lat else float("nan")))


def bare_load(client: redis.Redis, rate: float, seconds: float) -> results.LoadSide:
    from bench.bare_celery import bare_send

    n = max(1, round(rate * seconds))
    client.delete(DONE)
    first, last = paced(n, rate, lambda _i: bare_send.apply_async(args=[body(str(uuid.uuid4())), time.time()],
                                                                  queue="bench.bare"))
    deadline = time.monotonic() + 30 + n / 10
    while client.llen(DONE) < n and time.monotonic() < deadline:
        client.blpop("bench:never", timeout=0.05)
    done = [(float(a), float(b)) for a, b in (x.split() for x in client.lrange(DONE, 0, -1))]
    return load_side(first, last, n, done)


def parley_load(client: redis.Redis, rate: float, seconds: float) -> results.LoadSide:
    n = max(1, round(rate * seconds))
    last_event = client.xrevrange("parley:events", count=1)
    cursor = last_event[0][0] if last_event else "0"
    submitted: dict[str, float] = {}
    keys_ = [uuid.uuid4().hex for _ in range(n)]

    def submit(i: int) -> None:
        submitted[keys_[i]] = time.time()
        client.xadd("parley:commands", {"command": send_command(keys_[i])})

    first, last = paced(n, rate, submit)
    # The events are read after the offer (their ``at`` is the time of completion), so that while the
    # load is offered this process only appends: it shares the machine with the workers it measures.
    done: list[tuple[float, float]] = []
    deadline = time.monotonic() + 30 + n / 10
    while len(done) < n and time.monotonic() < deadline:
        for _s, rows in client.xread({"parley:events": cursor}, block=1000, count=1000) or []:
            for entry_id, fields in rows:
                cursor = entry_id
                event = json.loads(fields["event"])
                if event["type"] == "command.succeeded" and event["idempotency_key"] in submitted:
                    at = datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp()
                    done.append((at - submitted[event["idempotency_key"]], at))
                elif event["type"] == "command.failed":
                    raise SystemExit(f"command failed: {event}")
    return load_side(first, last, n, done)


def set_genesys_latency(api: str, latency_ms: int) -> None:
    """Make the emulator answer the agentless call after ``latency_ms``, as Genesys does over the internet."""
    import httpx

    httpx.delete(f"{api}/__emulator/faults").raise_for_status()
    if latency_ms:
        httpx.post(f"{api}/__emulator/faults", json={
            "method": "POST", "path": "/api/v2/conversations/messages/agentless",
            "latency_ms": latency_ms}).raise_for_status()


@dataclass
class Point:
    """One Genesys latency: throughput rounds of both sides, side by side, and the CPU they spent."""

    latency_ms: int
    bare: list[float]
    parley: list[float]
    bare_cpu: CpuMeter
    parley_cpu: CpuMeter

    @property
    def ratio(self) -> float:
        return statistics.median(self.parley) / statistics.median(self.bare)


def cpu_record(meter: CpuMeter, commands: int) -> results.CpuPerCommand:
    return results.CpuPerCommand(total_ms=round(sum(meter.spent.values()) / commands * 1e3, 2),
                                 by_process_ms={k: round(v / commands * 1e3, 2) for k, v in meter.spent.items()})


def cpu_line(name: str, meter: CpuMeter, commands: int) -> str:
    parts = "  ".join(f"{k} {v / commands * 1e3:.2f}" for k, v in meter.spent.items())
    return f"  CPU ms per command, {name:<6}: total {sum(meter.spent.values()) / commands * 1e3:.2f}  ({parts})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8,
                        help="Celery worker concurrency, the same for both sides.")
    parser.add_argument("--latency-samples", type=int, default=100)
    parser.add_argument("--genesys-latency-ms", default="0,10,25,50,100",
                        help="Comma-separated emulator latencies on the agentless call; one measured point each.")
    parser.add_argument("--load-rates", default="25,50,75,100,125,150",
                        help="Comma-separated offered loads (commands/s) of the open-loop sweep; empty: no sweep.")
    parser.add_argument("--load-seconds", type=float, default=10.0, help="How long each load is offered, per side.")
    parser.add_argument("--load-latency-ms", type=int, default=50,
                        help="Genesys latency during the open-loop sweep (a real Genesys answers in tens of ms).")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (bench/results.py)")
    args = parser.parse_args()
    run = results.RunInfo.start()
    latencies_ms = [int(x) for x in args.genesys_latency_ms.split(",") if x.strip()]
    load_rates = [float(x) for x in args.load_rates.split(",") if x.strip()]
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as server, \
            running_emulator({"PARLEY_EMULATOR_RATE_LIMIT_ENABLED": "false"}) as emulator:
        import httpx

        fixtures = httpx.get(f"{emulator.base_url}/__emulator/fixtures").json()
        env = parley_env(server.url, PARLEY_GENESYS_API_URL=emulator.base_url,
                         PARLEY_GENESYS_CLIENT_ID=fixtures["client_id"],
                         PARLEY_GENESYS_CLIENT_SECRET=fixtures["client_secret"],
                         PARLEY_GENESYS_RATE_LIMIT_PER_MINUTE="100000000")
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
        with running(ingest, parley_worker, bare_worker):
            bare_round(client, 50)  # warm up: imports, tokens, pools
            parley_round(client, 50)
            pids = {"redis": server.process.pid, "emulator": emulator.process.pid, "bench": os.getpid()}
            points = []
            for latency_ms in latencies_ms:
                set_genesys_latency(emulator.base_url, latency_ms)
                point = Point(latency_ms, [], [], CpuMeter({**pids, "celery worker": bare_worker.pid}),
                              CpuMeter({**pids, "ingest": ingest.pid, "celery worker": parley_worker.pid}))
                for _ in range(args.rounds):
                    point.bare.append(point.bare_cpu.measure(bare_round, client, args.commands)[0])
                    point.parley.append(point.parley_cpu.measure(parley_round, client, args.commands)[0])
                points.append(point)
            # Latency one command at a time (no queueing), Genesys answering at once: what Parley adds.
            set_genesys_latency(emulator.base_url, 0)
            bare_lat: list[float] = []
            parley_lat: list[float] = []
            for _ in range(args.latency_samples):
                bare_lat += bare_round(client, 1)[1]
                parley_lat += parley_round(client, 1)[1]
            # Throughput and latency against the load offered, Genesys answering in --load-latency-ms.
            load: list[results.LoadPoint] = []
            if load_rates:
                set_genesys_latency(emulator.base_url, args.load_latency_ms)
            for rate in load_rates:
                bare_side = bare_load(client, rate, args.load_seconds)
                parley_side = parley_load(client, rate, args.load_seconds)
                load.append(results.LoadPoint(offered_per_s=rate, seconds=args.load_seconds, bare=bare_side,
                                              parley=parley_side))
    print(f"commands per round: {args.commands}, rounds: {args.rounds}, celery concurrency: {args.concurrency} "
          f"(both sides), {os.cpu_count()} cores")
    for point in points:
        print(f"Genesys latency {point.latency_ms:4d} ms: bare {statistics.median(point.bare):7.1f}/s  "
              f"parley {statistics.median(point.parley):7.1f}/s  ratio {point.ratio:.3f}  "
              f"(rounds bare {[round(x) for x in point.bare]}, parley {[round(x) for x in point.parley]})")
        print(cpu_line("bare", point.bare_cpu, args.commands * args.rounds))
        print(cpu_line("parley", point.parley_cpu, args.commands * args.rounds))
    print(f"latency one command at a time, Genesys answering at once ({args.latency_samples} samples):")
    for name, values in (("bare", bare_lat), ("parley", parley_lat)):
        print(f"  {name:<6} p50 {pct(values, 0.5) * 1000:7.1f} ms  p99 {pct(values, 0.99) * 1000:7.1f} ms")
    print(f"  added by parley: p50 {(pct(parley_lat, 0.5) - pct(bare_lat, 0.5)) * 1000:.1f} ms, "
          f"p99 {(pct(parley_lat, 0.99) - pct(bare_lat, 0.99)) * 1000:.1f} ms")
    if load:
        print(f"open loop, Genesys latency {args.load_latency_ms} ms, {args.load_seconds:g} s per load per side:")
    for point in load:
        b, p = point.bare, point.parley
        print(f"  offered {point.offered_per_s:6.1f}/s: throughput bare {b.throughput_per_s:6.1f}/s "
              f"parley {p.throughput_per_s:6.1f}/s (ratio {p.throughput_per_s / b.throughput_per_s:.2f}); "
              f"latency p50/p99 bare {b.latency.p50_ms:.0f}/{b.latency.p99_ms:.0f} ms "
              f"parley {p.latency.p50_ms:.0f}/{p.latency.p99_ms:.0f} ms")
    n = args.commands * args.rounds
    results.write(args.json, results.PipelineResult(
        run=run.finish(), commands_per_round=args.commands, rounds=args.rounds, concurrency=args.concurrency,
        latency_sweep=[results.LatencySweepPoint(
            genesys_latency_ms=point.latency_ms, bare_per_s=[round(x, 1) for x in point.bare],
            parley_per_s=[round(x, 1) for x in point.parley],
            bare_median_per_s=round(statistics.median(point.bare), 1),
            parley_median_per_s=round(statistics.median(point.parley), 1), ratio=round(point.ratio, 3),
            bare_cpu=cpu_record(point.bare_cpu, n), parley_cpu=cpu_record(point.parley_cpu, n)) for point in points],
        one_at_a_time_bare=results.Percentiles(n=len(bare_lat), p50_ms=round(pct(bare_lat, 0.5) * 1000, 1),
                                               p99_ms=round(pct(bare_lat, 0.99) * 1000, 1)),
        one_at_a_time_parley=results.Percentiles(n=len(parley_lat), p50_ms=round(pct(parley_lat, 0.5) * 1000, 1),
                                                 p99_ms=round(pct(parley_lat, 0.99) * 1000, 1)),
        load_genesys_latency_ms=args.load_latency_ms, load=load))


if __name__ == "__main__":
    main()
