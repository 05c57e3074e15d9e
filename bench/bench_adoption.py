"""Adoption benchmark: SIGKILL a guest worker holding N web messaging sessions; another worker adopts
them all within the deployment's connection budget.

Two ``parley guest`` processes against one redis-server and one emulator (REST rate limits lifted, the
simulated agent answering at once). The first starts the N sessions with the emulator's guest limits off
and a boundless budget (the start is not under test); then the emulator's limits go on (the default
deployment: 1,000 new connections a minute, as Genesys) and the first worker is killed. The second
runs with the default settings (lease TTL 10 s, budget 900 a minute with a burst of 50). At the kill,
K of the sessions get a ``guest.send``: they have a command waiting, so they reconnect first.

Reported:

* ``adopted_all_s``: from the kill until every session has a socket opened after it (the emulator's
  ``/__emulator/sockets``), against ``budget_s`` = (N - burst) / rate, what the budget allows, and the
  target ``budget_s + 15`` (the lease lapsing and the adoption step fit in the 15 s);
* ``refused_upgrades``: ``guest.socket.refused`` entries in the emulator's ledger (target 0);
* ``sends``: the K sends' outcomes, how long until all succeeded, and exactly once: the emulator
  received K guest messages (none twice) and each answer became one ``guest.message`` event.

Run:  .venv/bin/python bench/bench_adoption.py --sessions 5000 --with-commands 100
      (``--json PATH``: also the typed record, bench/results.py)
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import results  # noqa: E402
from bench.bench_guest import DEPLOYMENT, EventReader, claim, hand_over, raise_fd_limit  # noqa: E402
from harness.emulator_server import running_emulator  # noqa: E402
from harness.processes import parley_env, stop  # noqa: E402
from parley.app.redis_server import RedisServer  # noqa: E402
from parley.records import Records  # noqa: E402
from parley.settings import Settings  # noqa: E402
from workers.guest.settings import GuestSettings  # noqa: E402

EMULATOR_ENV = {
    "PARLEY_EMULATOR_RATE_LIMIT_ENABLED": "false",
    "PARLEY_EMULATOR_WEBMESSAGING_LIMITS_ENABLED": "false",  # on at the kill
    "PARLEY_EMULATOR_AGENT_JOIN_DELAY_S": "0",
    "PARLEY_EMULATOR_AGENT_REPLY_DELAY_S": "0",
}
BOUNDLESS = {"PARLEY_GUEST_CONNECT_PER_MINUTE": "1000000", "PARLEY_GUEST_CONNECT_BURST": "1000000"}
POLL_S = 2.0


def guest_worker(redis_url: str, api_url: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "parley.app.cli", "guest"], cwd=ROOT,
                            env=parley_env(redis_url, PARLEY_GENESYS_API_URL=api_url, **env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(condition: Any, timeout_s: float, what: str, reader: EventReader | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        if reader is not None:
            reader.poll(block_ms=500)
        else:
            time.sleep(0.2)


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def reconnected_since(http: httpx.Client, since: float) -> set[str]:
    """Emulator sessions with a socket opened after ``since`` (epoch s)."""
    sockets = http.get("/__emulator/sockets").json()["sockets"]
    return {s["session_id"] for s in sockets if s["session_id"] and epoch(s["opened_at"]) > since}


def measure(n: int, with_commands: int, run: results.RunInfo) -> results.AdoptionResult:
    defaults = GuestSettings()
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server, \
            running_emulator(EMULATOR_ENV) as emulator:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        http = httpx.Client(base_url=emulator.base_url, timeout=60)
        records = Records(client, Settings(redis_url=server.url))
        reader = EventReader(client)
        first = guest_worker(server.url, emulator.base_url, **BOUNDLESS)
        second = None
        try:
            wait_for(lambda: bool(list(client.scan_iter("parley:heartbeat:guest:*"))), 30, "the first worker")
            session_keys = [f"adopt-{i}-{uuid.uuid4().hex[:6]}" for i in range(n)]
            began = time.monotonic()
            starts = hand_over(client, claim(records, [
                {"type": "guest.start", "idempotency_key": f"s-{k}", "session_key": k, "deployment_id": DEPLOYMENT}
                for k in session_keys]))
            wait_for(lambda: all(c in reader.succeeded for c in starts), 120 + n / 10, "the sessions to start", reader)
            start_s = time.monotonic() - began

            second = guest_worker(server.url, emulator.base_url)
            wait_for(lambda: len(list(client.scan_iter("parley:heartbeat:guest:*"))) >= 2, 30, "the second worker")
            http.patch("/__emulator/config", json={"webmessaging_limits_enabled": True}).raise_for_status()
            sends = claim(records, [{"type": "guest.send", "idempotency_key": f"m-{k}", "session_key": k,
                                     "text": f"after the kill {i}"}
                                    for i, k in enumerate(session_keys[:with_commands])])
            first.send_signal(signal.SIGKILL)
            first.wait()
            killed_at, killed_epoch = time.monotonic(), time.time()
            hand_over(client, sends)

            adopted: set[str] = set()
            sends_done_s = None
            deadline = killed_at + 120 + n / 10
            while len(adopted) < n:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {len(adopted)} of {n} sessions adopted")
                reader.poll(block_ms=int(POLL_S * 1000))
                if sends_done_s is None and all(s.command_id in reader.succeeded for s in sends):
                    sends_done_s = round(time.monotonic() - killed_at, 1)
                adopted = reconnected_since(http, killed_epoch)
            adopted_s = time.monotonic() - killed_at
            wait_for(lambda: all(s.command_id in reader.succeeded for s in sends), 60, "the sends", reader)
            if sends_done_s is None:
                sends_done_s = round(time.monotonic() - killed_at, 1)
            answers_at = time.monotonic() + 5
            while time.monotonic() < answers_at:  # the agent's answers to the last sends
                reader.poll()

            refused = http.get("/__emulator/ledger", params={"kind": "guest.socket.refused"}).json()["entries"]
            received = http.get("/__emulator/ledger", params={"kind": "guest.message.received"}).json()["entries"]
            answers = Counter(text for text in _answers(client) if text.startswith("You said: after the kill"))
            budget_s = (n - defaults.connect_burst) / (defaults.connect_per_minute / 60)
            return results.AdoptionResult(
                run=run.finish(), sessions=n, connect_per_minute=defaults.connect_per_minute,
                connect_burst=defaults.connect_burst, start_all_s=round(start_s, 1),
                adopted_all_s=round(adopted_s, 1), budget_s=round(budget_s, 1),
                target_s=round(budget_s + 15, 1), met=adopted_s <= budget_s + 15, refused_upgrades=len(refused),
                sends=results.AdoptionSends(
                    sent=len(sends), succeeded=sum(1 for s in sends if s.command_id in reader.succeeded),
                    failed=reader.failed, all_succeeded_s=sends_done_s, genesys_received=len(received),
                    # each of those sessions sent one message: two from one session is a double
                    genesys_received_twice=sum(1 for c in Counter(e["session_id"] for e in received).values()
                                               if c > 1),
                    answers_relayed=sum(answers.values()),
                    answers_relayed_twice=sum(1 for c in answers.values() if c > 1)))
        finally:
            for worker in (first, second):
                if worker is not None:
                    stop(worker, timeout_s=60)
            http.close()
            client.close()


def _answers(client: redis.Redis) -> list[str]:
    """Texts of every guest.message event (the agent's answers), read from the start of parley:events."""
    texts, last = [], "0"
    while rows := client.xrange("parley:events", min=f"({last}" if last != "0" else "-", count=10_000):
        for entry_id, fields in rows:
            last = entry_id
            event = json.loads(fields["event"])
            if event["type"] == "guest.message":
                texts.append(event["text"])
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--with-commands", type=int, default=100, help="sessions given a guest.send at the kill")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (bench/results.py)")
    args = parser.parse_args()
    run = results.RunInfo.start()
    raise_fd_limit()
    report = measure(args.sessions, min(args.with_commands, args.sessions), run)
    print(report.model_dump_json(indent=2, exclude={"run"}))
    results.write(args.json, report)
    if not report.met or report.refused_upgrades:
        sys.exit(1)


if __name__ == "__main__":
    main()
