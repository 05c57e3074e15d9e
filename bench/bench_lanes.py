"""Priority lanes: a trickle of ``high`` commands beside a ``bulk`` campaign offered 3x the rate budget.

One emulator (limiting its token to the budget, so an overshoot is a real 429), one redis-server,
`parley ingest` and one Celery worker. Every command is a web messaging ``message.send`` to a new
customer (one Genesys request, no order between them). On one stack, one phase after another:

1. alone: the ``high`` trickle only (one command every ``--high-every`` seconds) for ``--seconds``;
2. beside: the same trickle while ``bulk`` commands are offered at 3x the budget for ``--seconds``;
3. without lanes (the baseline): the same again with the trickle sent as ``bulk`` too, first come first
   served behind the campaign, as before lanes.

Reported: the high commands' latency (XADD to ``command.succeeded``, both on Redis' clock) beside vs
alone, as the extra wait in budget slots (target: within 2 slots at p95); the share of the budget used
while the campaign was offered (requests the emulator served in the window / budget; target >= 95%);
and the 429s Parley received (target 0).

    .venv/bin/python bench/bench_lanes.py                        # 120/min budget, 40 s phases
    .venv/bin/python bench/bench_lanes.py --budget 300 --seconds 60
    .venv/bin/python bench/bench_lanes.py --json bench/data/lanes.json   # also the typed record (bench/results.py)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import results
from bench.bench_orgs import _ms, await_outcomes, budget_use, http_429s, latency95, pct, served
from emulator.fixtures import SEED
from genesys.ratelimit import RateLimiter
from harness.emulator_server import EmulatorServer, running_emulator
from harness.processes import parley_env, running, start_celery, start_ingest
from parley.app.redis_server import RedisServer
from parley.producer import Producer
from parley.settings import Settings


@dataclass(frozen=True)
class Phase:
    high_latencies_s: list[float]
    requests: int
    http_429s: int
    seconds: float


@contextmanager
def stack(budget: int, concurrency: int, tmp: Path) -> Iterator[tuple[redis.Redis, EmulatorServer]]:
    with ExitStack() as s:
        server = s.enter_context(RedisServer(tmp / "redis"))
        emulator = s.enter_context(running_emulator({"PARLEY_EMULATOR_RATE_LIMIT_PER_MINUTE": str(budget)}))
        env = parley_env(server.url, PARLEY_GENESYS_API_URL=emulator.base_url, PARLEY_GENESYS_CLIENT_ID=SEED.client_id,
                         PARLEY_GENESYS_CLIENT_SECRET=SEED.client_secret,
                         PARLEY_GENESYS_RATE_LIMIT_PER_MINUTE=str(budget), PARLEY_RETRY_MAX_DELAY_S="60",
                         PARLEY_TASK_TIME_LIMIT_S="20", PARLEY_VISIBILITY_TIMEOUT_S="120")
        env.pop("PARLEY_GENESYS_REGION", None)
        logs = tmp / "logs"
        logs.mkdir(exist_ok=True)
        s.enter_context(running(start_ingest(env, log=logs / "ingest.log"),
                                start_celery(env, app="tasks.app", concurrency=concurrency, log=logs / "celery.log")))
        yield redis.Redis.from_url(server.url, decode_responses=True), emulator


def offer(client: redis.Redis, lane: str, per_second: float, seconds: float, sent: dict[str, str]) -> None:
    """Submit ``per_second`` commands a second in ``lane`` for ``seconds``, on schedule (open loop)."""
    producer = Producer(client, Settings())
    start = time.time()
    n = 0
    while (due := start + n / per_second) < start + seconds:
        time.sleep(max(0.0, due - time.time()))  # pacing the offered load, not waiting on an event
        key = f"{lane}-{uuid.uuid4().hex[:12]}"
        sent[key] = producer.submit({"type": "message.send", "idempotency_key": key, "lane": lane,
                                     "channel": "webmessaging", "from_address": SEED.deployments[0].id,
                                     "external_contact_id": str(uuid.uuid4()), "text": "Your order has shipped"})
        n += 1


def run_phase(client: redis.Redis, emulator: EmulatorServer, *, seconds: float, high_every_s: float,
              bulk_per_s: float, high_lane: str) -> Phase:
    start_ms = _ms(client.xadd("bench:clock", {"t": "1"}, maxlen=1))
    before_429s = sum(http_429s(client).values())
    high: dict[str, str] = {}
    bulk: dict[str, str] = {}
    loads = [threading.Thread(target=offer, args=(client, high_lane, 1 / high_every_s, seconds, high))]
    if bulk_per_s:
        loads.append(threading.Thread(target=offer, args=(client, "bulk", bulk_per_s, seconds, bulk)))
    for t in loads:
        t.start()
    for t in loads:
        t.join()
    end_ms = start_ms + int(seconds * 1000)
    backlog_s = len(bulk) / bulk_per_s * 3 if bulk_per_s else 0  # drains at the budget: 3x the offering
    outcomes = await_outcomes(client, set(high) | set(bulk), timeout_s=backlog_s + 120)
    latencies = [(_ms(outcomes[k][0]) - _ms(e)) / 1000 for k, e in high.items()
                 if k in outcomes and outcomes[k][1]["type"] == "command.succeeded"]
    if len(outcomes) < len(high) + len(bulk):
        raise SystemExit(f"{len(high) + len(bulk) - len(outcomes)} commands did not end")
    return Phase(latencies, served(emulator, start_ms, end_ms), sum(http_429s(client).values()) - before_429s,
                 seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=120, help="requests/minute of the org (default 120)")
    parser.add_argument("--seconds", type=float, default=40.0, help="length of each phase (default 40)")
    parser.add_argument("--high-every", type=float, default=2.0, help="seconds between high commands (default 2)")
    parser.add_argument("--overload", type=float, default=3.0, help="bulk offered / budget (default 3)")
    parser.add_argument("--concurrency", type=int, default=4, help="Celery worker processes (default 4)")
    parser.add_argument("--keep-logs", metavar="DIR", help="write the workers' logs and Redis there")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (bench/results.py)")
    args = parser.parse_args()
    run = results.RunInfo.start()
    bulk_per_s = args.overload * args.budget / 60
    slot_s = RateLimiter("k", "p", args.budget).interval_ms / 1000
    print(f"budget {args.budget}/min (a slot every {slot_s * 1000:.0f} ms); bulk offered {args.overload:g}x, "
          f"one high command every {args.high_every:g} s; {args.seconds:g} s per phase; "
          f"Celery concurrency {args.concurrency}")
    with tempfile.TemporaryDirectory() as tmp, stack(args.budget, args.concurrency, Path(args.keep_logs or tmp)) as (
            client, emulator):
        warm = {}
        offer(client, "normal", 1.0, 1.0, warm)
        if len(await_outcomes(client, set(warm), timeout_s=180)) < len(warm):
            raise SystemExit("the stack did not answer a command within 180 s")
        common = {"seconds": args.seconds, "high_every_s": args.high_every}
        alone = run_phase(client, emulator, bulk_per_s=0, high_lane="high", **common)
        beside = run_phase(client, emulator, bulk_per_s=bulk_per_s, high_lane="high", **common)
        unlaned = run_phase(client, emulator, bulk_per_s=bulk_per_s, high_lane="bulk", **common)
    report(args.budget, slot_s, alone, beside, unlaned)
    results.write(args.json, results.LanesResult(
        run=run.finish(), budget_per_minute=args.budget, slot_ms=round(slot_s * 1000, 1), overload=args.overload,
        high_every_s=args.high_every, seconds=args.seconds, concurrency=args.concurrency,
        phases=[results.LanesPhase(phase=name, high=latency95(phase.high_latencies_s),
                                   budget_use=budget_use(phase.requests, phase.http_429s, args.budget, phase.seconds))
                for name, phase in (("alone", alone), ("beside", beside), ("unlaned", unlaned))]))


def report(budget: int, slot_s: float, alone: Phase, beside: Phase, unlaned: Phase) -> None:
    base = statistics.median(alone.high_latencies_s)
    for name, phase in (("alone", alone), ("beside bulk 3x", beside), ("no lanes (baseline)", unlaned)):
        lat = phase.high_latencies_s
        print(f"  high latency {name:20} p50 {statistics.median(lat) * 1000:7.0f} ms  p95 {pct(lat, 0.95) * 1000:7.0f}"
              f" ms  max {max(lat) * 1000:7.0f} ms  ({len(lat)} commands)")
    for name, phase in (("beside", beside), ("no lanes", unlaned)):
        extra = [(pct(phase.high_latencies_s, q) - pct(alone.high_latencies_s, q)) / slot_s for q in (0.5, 0.95)]
        window = budget * phase.seconds / 60
        print(f"  {name:9} high wait beyond alone: p50 {extra[0]:5.1f} slots, p95 {extra[1]:5.1f} slots "
              f"(target <= 2); max {(max(phase.high_latencies_s) - base) / slot_s:5.1f} slots; "
              f"budget used {phase.requests / window:5.1%} ({phase.requests} of {window:.0f}); "
              f"429s {phase.http_429s}")


if __name__ == "__main__":
    main()
