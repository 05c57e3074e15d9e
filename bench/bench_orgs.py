"""No org starves another: org B's latency alone vs beside org A offered 3x its rate budget.

Two emulators (the default org and the ``second`` one, each limiting its token to the budget, so an
overshoot is a real 429), one redis-server, `parley ingest` and one Celery worker serving both orgs
(``northwind`` through PARLEY_ORGS). Every command is a web messaging ``message.send`` (one Genesys
request). For each mode, on a fresh stack:

1. alone: org B offered 0.5x its budget for ``--seconds``;
2. beside: the same for org B while org A is offered 3x its budget.

Org B's latency (XADD to its ``command.succeeded``, both on Redis' clock) beside vs alone is the
ratio (target <= 1.10). Reported per org: the share of the budget used during the burst (requests
the emulator served in the window / budget) and the 429s Parley received (target 0).

Modes: ``parked`` (PARLEY_GENESYS_RATE_WAIT_MAX_S at its default, 0: a command with no slot free at
once is parked and frees its worker) and ``waiting`` (a bound of an hour: every command waits for its slot
inside the Celery worker, as before issue 15), the baseline that shows what parking buys.

    .venv/bin/python bench/bench_orgs.py                        # 120/min budgets, 40 s phases
    .venv/bin/python bench/bench_orgs.py --seconds 20 --modes parked
    .venv/bin/python bench/bench_orgs.py --json bench/data/orgs.json   # also the typed record (bench/results.py)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import results
from emulator.fixtures import SECOND, SEED
from harness.emulator_server import EmulatorServer, running_emulator
from harness.processes import parley_env, running, start_celery, start_ingest
from parley.app.redis_server import RedisServer
from parley.producer import Producer
from parley.settings import Settings

EVENTS = "parley:events"
WAITING_BOUND_S = "3600"  # the ``waiting`` mode: no command is ever parked


@dataclass(frozen=True)
class OrgLoad:
    alias: str
    deployment: str
    per_second: float


@dataclass
class Phase:
    latencies_s: dict[str, list[float]]
    requests: dict[str, int]
    http_429s: dict[str, int]
    seconds: float


@contextmanager
def stack(budget: int, concurrency: int, mode: str, bound_s: str,
          tmp: Path) -> Iterator[tuple[redis.Redis, dict[str, EmulatorServer]]]:
    with ExitStack() as s:
        server = s.enter_context(RedisServer(tmp / f"redis-{mode}"))
        limit = {"PARLEY_EMULATOR_RATE_LIMIT_PER_MINUTE": str(budget)}
        emulators = {"default": s.enter_context(running_emulator(limit)),
                     "northwind": s.enter_context(running_emulator({**limit, "PARLEY_EMULATOR_ORG": "second"}))}
        orgs = {"northwind": {"api_url": emulators["northwind"].base_url, "client_id": SECOND.client_id,
                              "client_secret": SECOND.client_secret, "rate_limit_per_minute": budget}}
        env = parley_env(server.url, PARLEY_GENESYS_API_URL=emulators["default"].base_url,
                         PARLEY_GENESYS_CLIENT_ID=SEED.client_id, PARLEY_GENESYS_CLIENT_SECRET=SEED.client_secret,
                         PARLEY_GENESYS_RATE_LIMIT_PER_MINUTE=str(budget), PARLEY_ORGS=json.dumps(orgs),
                         PARLEY_GENESYS_RATE_WAIT_MAX_S=bound_s, PARLEY_RETRY_MAX_DELAY_S="60",
                         PARLEY_TASK_TIME_LIMIT_S="3700" if mode == "waiting" else "20",
                         PARLEY_VISIBILITY_TIMEOUT_S="3800" if mode == "waiting" else "120")
        env.pop("PARLEY_GENESYS_REGION", None)
        s.enter_context(running(start_ingest(env), start_celery(env, app="tasks.app", concurrency=concurrency)))
        yield redis.Redis.from_url(server.url, decode_responses=True), emulators


def offer(client: redis.Redis, load: OrgLoad, seconds: float, sent: dict[str, str]) -> None:
    """Submit ``load.per_second`` commands a second for ``seconds``, on schedule (open loop)."""
    producer = Producer(client, Settings())
    start = time.time()
    n = 0
    while (due := start + n / load.per_second) < start + seconds:
        time.sleep(max(0.0, due - time.time()))  # pacing the offered load, not waiting on an event
        key = f"{load.alias}-{uuid.uuid4().hex[:12]}"
        entry_id = producer.submit({"type": "message.send", "idempotency_key": key, "org": load.alias,
                                    "channel": "webmessaging", "from_address": load.deployment,
                                    "external_contact_id": str(uuid.uuid4()), "text": "Your order has shipped"})
        sent[key] = entry_id
        n += 1


def _ms(entry_id: str) -> int:
    return int(entry_id.split("-")[0])


def await_outcomes(client: redis.Redis, keys: set[str], timeout_s: float) -> dict[str, tuple[str, dict[str, Any]]]:
    """Terminal events of ``keys`` (event entry id, event), blocking on the stream until all are in."""
    done: dict[str, tuple[str, dict[str, Any]]] = {}
    last, deadline = "0", time.monotonic() + timeout_s
    while len(done) < len(keys) and time.monotonic() < deadline:
        for _stream, rows in client.xread({EVENTS: last}, count=1000, block=1000) or []:
            for entry_id, fields in rows:
                last = entry_id
                event = json.loads(fields["event"])
                if event.get("idempotency_key") in keys and event["type"] in ("command.succeeded", "command.failed"):
                    done[event["idempotency_key"]] = (entry_id, event)
    return done


def run_phase(client: redis.Redis, emulators: dict[str, EmulatorServer], loads: list[OrgLoad],
              seconds: float, measured: str) -> Phase:
    start_ms = _ms(client.xadd("bench:clock", {"t": "1"}, maxlen=1))
    sent: dict[str, dict[str, str]] = {load.alias: {} for load in loads}
    threads = [threading.Thread(target=offer, args=(client, load, seconds, sent[load.alias])) for load in loads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end_ms = start_ms + int(seconds * 1000)
    outcomes = await_outcomes(client, set(sent[measured]), timeout_s=seconds * 4 + 120)
    latencies: dict[str, list[float]] = {}
    for alias, keys in sent.items():
        latencies[alias] = [(_ms(outcomes[k][0]) - _ms(e)) / 1000 for k, e in keys.items() if k in outcomes
                            and outcomes[k][1]["type"] == "command.succeeded"]
    return Phase(latencies, {alias: served(emu, start_ms, end_ms) for alias, emu in emulators.items()},
                 http_429s(client), seconds)


def served(emulator: EmulatorServer, start_ms: int, end_ms: int) -> int:
    """Agentless sends the emulator performed inside the window (one Genesys request each)."""
    entries = httpx.get(f"{emulator.base_url}/__emulator/ledger", params={"kind": "message.sent"}).json()["entries"]
    return sum(1 for e in entries if start_ms <= datetime.fromisoformat(e["at"]).timestamp() * 1000 < end_ms)


def http_429s(client: redis.Redis) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _id, fields in client.xrange(EVENTS):
        event = json.loads(fields["event"])
        if event["type"] == "command.retrying" and (event.get("error") or {}).get("status") == 429:
            counts[event["org"]] = counts.get(event["org"], 0) + 1
    return counts


def warm_up(client: redis.Redis, loads: list[OrgLoad]) -> None:
    """One command per org, awaited: the workers are up and each org's token is fetched before measuring."""
    sent: dict[str, str] = {}
    for load in loads:
        offer(client, OrgLoad(load.alias, load.deployment, per_second=1.0), 1.0, sent)
    if len(await_outcomes(client, set(sent), timeout_s=180)) < len(sent):
        raise SystemExit("the stack did not answer a command per org within 180 s")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency95(values_s: list[float]) -> results.Latency95:
    return results.Latency95(n=len(values_s), p50_ms=round(pct(values_s, 0.5) * 1000, 1),
                             p95_ms=round(pct(values_s, 0.95) * 1000, 1),
                             max_ms=round(max(values_s, default=float("nan")) * 1000, 1))


def budget_use(requests: int, http_429s: int, budget: int, seconds: float) -> results.BudgetUse:
    window = budget * seconds / 60
    return results.BudgetUse(requests=requests, window_budget=round(window, 1),
                             share=round(requests / window, 4), http_429s=http_429s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=120, help="requests/minute of each org (default 120)")
    parser.add_argument("--seconds", type=float, default=40.0, help="length of each phase (default 40)")
    parser.add_argument("--concurrency", type=int, default=4, help="Celery worker processes (default 4)")
    parser.add_argument("--modes", default="parked,waiting", help="parked, waiting or both (default)")
    parser.add_argument("--bound", default=str(Settings.model_fields["genesys_rate_wait_max_s"].default),
                        help="PARLEY_GENESYS_RATE_WAIT_MAX_S of the parked mode (default: the setting's)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (bench/results.py)")
    args = parser.parse_args()
    run = results.RunInfo.start()
    modes: list[results.OrgsMode] = []
    per_s = args.budget / 60
    a = OrgLoad("default", SEED.deployments[0].id, 3 * per_s)
    b = OrgLoad("northwind", SECOND.deployments[0].id, 0.5 * per_s)
    print(f"budget {args.budget}/min per org; org A (default) offered 3x, org B (northwind) 0.5x; "
          f"{args.seconds:g} s per phase; Celery concurrency {args.concurrency}")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            bound = args.bound if mode == "parked" else WAITING_BOUND_S
            with stack(args.budget, args.concurrency, mode, bound, Path(tmp)) as (client, emulators):
                warm_up(client, [a, b])
                alone = run_phase(client, emulators, [b], args.seconds, measured="northwind")
                beside = run_phase(client, emulators, [a, b], args.seconds, measured="northwind")
            report(mode, bound, args.budget, alone, beside)
            modes.append(results.OrgsMode(
                mode=mode, rate_wait_max_s=bound, b_alone=latency95(alone.latencies_s[b.alias]),
                b_beside=latency95(beside.latencies_s[b.alias]),
                budget_use={alias: budget_use(beside.requests[alias], beside.http_429s.get(alias, 0), args.budget,
                                              beside.seconds) for alias in (a.alias, b.alias)}))
    results.write(args.json, results.OrgsResult(
        run=run.finish(), budget_per_minute=args.budget, seconds=args.seconds, concurrency=args.concurrency,
        org_a=a.alias, org_b=b.alias, org_a_offered=3.0, org_b_offered=0.5, modes=modes))


def report(mode: str, bound: str, budget: int, alone: Phase, beside: Phase) -> None:
    la, lb = alone.latencies_s["northwind"], beside.latencies_s["northwind"]
    window_budget = budget * beside.seconds / 60
    print(f"\nmode {mode} (PARLEY_GENESYS_RATE_WAIT_MAX_S={bound})")
    print(f"  org B latency alone:  p50 {statistics.median(la) * 1000:7.0f} ms  p95 {pct(la, 0.95) * 1000:7.0f} ms"
          f"  ({len(la)} commands)")
    print(f"  org B latency beside: p50 {statistics.median(lb) * 1000:7.0f} ms  p95 {pct(lb, 0.95) * 1000:7.0f} ms"
          f"  ({len(lb)} commands)")
    print(f"  ratio beside/alone:   p50 {statistics.median(lb) / statistics.median(la):.2f}"
          f"  p95 {pct(lb, 0.95) / pct(la, 0.95):.2f}   (target <= 1.10)")
    for alias, label in (("default", "org A (3x)"), ("northwind", "org B (0.5x)")):
        print(f"  {label:13} budget used during the burst: {beside.requests[alias] / window_budget:5.0%}"
              f"  ({beside.requests[alias]} requests of {window_budget:.0f}); 429s received: "
              f"{beside.http_429s.get(alias, 0)}")


if __name__ == "__main__":
    main()
