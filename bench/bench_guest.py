"""Guest worker benchmark: N web messaging sessions with traffic in ONE worker process, against a bare
websockets client holding the same N sockets and doing the same exchange (the baseline).

Both run against the same emulator (rate limits lifted, the simulated agent answering at once), one
after the other, at the same message rate:

* memory per session: (RSS with N sessions open - RSS before) / N, of the worker process and of the
  baseline client process;
* guest.send -> confirmed: Parley: the command's entry in ``parley:guest:commands`` -> its
  ``command.succeeded`` in ``parley:events`` (both Redis stream ids, so one clock); baseline: send ->
  the Inbound echo carrying its tracingId;
* agent message relay: the agent's message time (``channel.time``, stamped by the emulator when it
  emits the message) -> the ``guest.message`` event's stream id in Redis (Parley) or the frame's
  arrival (baseline);
* CPU: the worker's (or the baseline client's) CPU time during the traffic phase, in % of one core.
* Redis stalls during the traffic phase (:class:`RedisStalls`): forks for AOF rewrites (each loads the
  emulator's core for a second or two), the last fork's duration, delayed AOF fsyncs; a run's tail can
  be read in their light.

Isolation. On a machine with two or more cores the worker process, and the baseline client in its
turn, gets a core of its own (``sched_setaffinity``, the same core for both), while this process (the
load generator; it claims the sends before the timed phase and reads the events after it, by their
stream ids), the emulator and redis-server share the others: the target is about the worker, and
neither Genesys nor Redis shares the worker's CPU in production. Both sides run
on the same event loop (uvloop where installed, as ``parley guest`` does). ``--no-pin`` runs
everything wherever the scheduler puts it. ``--no-aof-rewrite`` keeps AOF persistence but turns off
redis-server's automatic rewrites, whose fork otherwise lands on the emulator's core mid-traffic.

Run:  .venv/bin/python bench/bench_guest.py --sessions 1000 --rate 500 --seconds 20
      .venv/bin/python bench/bench_guest.py --sessions 100,1000,10000 --json out.json   # one run per count
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from typing import Any

import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import results  # noqa: E402
from harness.emulator_server import running_emulator  # noqa: E402
from harness.processes import stop  # noqa: E402
from parley import keys  # noqa: E402
from parley.app.redis_server import RedisServer  # noqa: E402
from parley.records import Records  # noqa: E402
from parley.settings import Settings  # noqa: E402
from schemas.validation import parse_command  # noqa: E402
from workers.guest.handoff import HandOff  # noqa: E402
from workers.guest.worker import use_fast_event_loop  # noqa: E402

DEPLOYMENT = "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607"
EMULATOR_ENV = {
    "PARLEY_EMULATOR_RATE_LIMIT_ENABLED": "false",
    "PARLEY_EMULATOR_WEBMESSAGING_LIMITS_ENABLED": "false",
    "PARLEY_EMULATOR_AGENT_JOIN_DELAY_S": "0",
    "PARLEY_EMULATOR_AGENT_REPLY_DELAY_S": "0",
}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": round(percentile(values, 50), 1), "p99_ms": round(percentile(values, 99), 1),
            "mean_ms": round(statistics.fmean(values), 1) if values else float("nan")}


def stream_ms(entry_id: str) -> float:
    return float(entry_id.split("-")[0])


def iso_ms(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000


@dataclass(frozen=True)
class Cores:
    """Which CPUs the measured process gets, and which everything else gets."""

    measured: frozenset[int]
    rest: frozenset[int]

    def pin_child(self) -> None:
        """preexec_fn of the measured process (the worker, the baseline client)."""
        os.sched_setaffinity(0, self.measured)


def plan_cores(pin: bool) -> Cores | None:
    cores = sorted(os.sched_getaffinity(0))
    if not pin or len(cores) < 2:
        return None
    return Cores(frozenset(cores[-1:]), frozenset(cores[:-1]))


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def cpu_use(processes: dict[str, psutil.Process]) -> dict[str, float]:
    """CPU seconds so far of the processes around the worker (emulator, redis-server, load generator)."""
    return {name: cpu_seconds(proc) for name, proc in processes.items()}


@dataclass(frozen=True)
class RedisStalls:
    """What redis-server did during the traffic that stalls its replies: forks (AOF rewrites; the last
    fork's duration, during which Redis answers nobody) and delayed AOF writes (an fsync still running
    after two seconds, typically while a rewrite child fills the disk: Redis then holds its writes, and
    the replies behind them)."""

    forks: int
    last_fork_ms: float
    delayed_fsyncs: int

    @classmethod
    def read(cls, client: redis.Redis) -> RedisStalls:
        stats, persistence = client.info("stats"), client.info("persistence")
        return cls(int(stats["total_forks"]), int(stats["latest_fork_usec"]) / 1000,
                   int(persistence.get("aof_delayed_fsync", 0)))

    def since(self, before: RedisStalls) -> dict[str, float]:
        return {"redis_forks_during_traffic": self.forks - before.forks,
                "redis_last_fork_ms": round(self.last_fork_ms, 1) if self.forks > before.forks else 0.0,
                "redis_delayed_aof_fsyncs": self.delayed_fsyncs - before.delayed_fsyncs}


def raise_fd_limit() -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- Parley: the guest worker as its own process ----------------------------------------------------------


class EventReader:
    """Follows parley:events from where it was created; counts what the bench waits for."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.last = client.xinfo_stream("parley:events")["last-generated-id"] if client.exists("parley:events") else "0"
        self.succeeded: dict[str, float] = {}  # command id -> ms
        self.failed = 0
        self.relay_ms: list[float] = []
        self.messages = 0

    def poll(self, block_ms: int = 200) -> int:
        """Read what is new (waiting up to ``block_ms``); how many events came."""
        reply = self.client.xread({"parley:events": self.last}, count=5000, block=block_ms)
        rows_read = 0
        for _stream, rows in reply or []:
            rows_read += len(rows)
            for entry_id, fields in rows:
                self.last = entry_id
                event = json.loads(fields["event"])
                kind = event["type"]
                if kind == "command.succeeded":
                    self.succeeded[event["command_id"]] = stream_ms(entry_id)
                elif kind == "command.failed":
                    self.failed += 1
                elif kind == "guest.message":
                    self.messages += 1
                    if event["text"].startswith("You said: ") and event.get("sent_at"):
                        self.relay_ms.append(stream_ms(entry_id) - iso_ms(event["sent_at"]))
        return rows_read


@dataclass(frozen=True)
class Claimed:
    command_id: str
    type: str
    session_key: str
    hand_off: HandOff


def claim(records: Records, commands: list[dict[str, Any]]) -> list[Claimed]:
    """Claim commands as the ingestion worker does (record + ``command.accepted``), not handed over yet."""
    claimed = []
    for command in commands:
        raw = json.dumps(command)
        parsed = parse_command(raw)
        command_id = uuid.uuid4().hex
        records.claim(parsed, command_id, raw, "0-1")
        claimed.append(Claimed(command_id, parsed.type, command["session_key"], HandOff.of(command_id, parsed)))
    return claimed


def hand_over(client: redis.Redis, claimed: list[Claimed]) -> dict[str, float]:
    """Append claimed commands to the guest stream, as the ingestion worker does next; id -> entry ms."""
    return {c.command_id: stream_ms(client.xadd(keys.GUEST_COMMANDS_STREAM, c.hand_off.fields()))  # type: ignore[arg-type]
            for c in claimed}


def run_parley(redis_url: str, api_url: str, n: int, rate: float, seconds: float, cores: Cores | None,
               environment: dict[str, psutil.Process]) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    settings = Settings(redis_url=redis_url)
    records = Records(client, settings)
    env = {**os.environ, "PARLEY_REDIS_URL": redis_url, "PARLEY_GENESYS_API_URL": api_url, "PYTHONPATH": str(ROOT),
           # Measured here: traffic on open sessions, as the baseline client has it. How fast sessions may
           # open (Genesys' 1,000 a minute, the fleet's connection budget) is bench_adoption.py's subject,
           # and the emulator's limits are lifted for both sides alike.
           "PARLEY_GUEST_CONNECT_PER_MINUTE": "1e9", "PARLEY_GUEST_CONNECT_BURST": "1000000",
           "PARLEY_GUEST_MESSAGES_PER_SECOND": "0"}
    worker = subprocess.Popen([sys.executable, "-m", "parley.app.cli", "guest"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=cores.pin_child if cores else None)
    try:
        proc = psutil.Process(worker.pid)
        while not list(client.scan_iter("parley:heartbeat:guest:*")):
            time.sleep(0.1)
        time.sleep(1.0)
        rss_idle = proc.memory_info().rss
        reader = EventReader(client)
        keys_ = [f"bench-{i}-{uuid.uuid4().hex[:6]}" for i in range(n)]
        started_at = time.monotonic()
        starts = hand_over(client, claim(records, [{"type": "guest.start", "idempotency_key": f"s-{k}",
                                                    "session_key": k, "deployment_id": DEPLOYMENT} for k in keys_]))
        while sum(1 for c in starts if c in reader.succeeded) < n:
            reader.poll()
            if time.monotonic() - started_at > 120 + n / 20:  # a guard against a hang; generous on a busy machine
                raise TimeoutError(f"only {sum(1 for c in starts if c in reader.succeeded)} of {n} sessions started")
        start_s = time.monotonic() - started_at
        time.sleep(1.0)
        rss_open = proc.memory_info().rss
        planned = plan_sends(records, reader, keys_, rate, seconds)
        cpu_before, env_before, traffic_began = cpu_seconds(proc), cpu_use(environment), time.monotonic()
        stalls_before = RedisStalls.read(client)
        sends = traffic(client, planned, rate)
        traffic_s = time.monotonic() - traffic_began
        stalls = RedisStalls.read(client).since(stalls_before)
        cpu_pct = (cpu_seconds(proc) - cpu_before) / traffic_s * 100
        env_pct = {name: round((used - env_before[name]) / traffic_s * 100)
                   for name, used in cpu_use(environment).items()}
        deadline = time.monotonic() + 60
        while sum(1 for c in sends if c in reader.succeeded) < len(sends) and time.monotonic() < deadline:
            reader.poll()
        drain_until = time.monotonic() + 3
        while time.monotonic() < drain_until:
            reader.poll()
        rss_traffic = proc.memory_info().rss
        confirm = [reader.succeeded[c] - t for c, t in sends.items() if c in reader.succeeded]
        return {
            "sessions": n, "start_all_s": round(start_s, 1),
            "rss_idle_mb": round(rss_idle / 2**20, 1), "rss_open_mb": round(rss_open / 2**20, 1),
            "rss_after_traffic_mb": round(rss_traffic / 2**20, 1),
            "kb_per_session": round((rss_open - rss_idle) / n / 1024, 1),
            "cpu_pct": round(cpu_pct), "environment_cpu_pct": env_pct, **stalls,
            "sent": len(sends), "confirmed": len(confirm), "failed": reader.failed,
            "send_to_confirm": summary(confirm), "agent_relay": summary(reader.relay_ms),
        }
    finally:
        stop(worker, timeout_s=60)  # a guest worker hands its sessions over on SIGTERM
        client.close()


def plan_sends(records: Records, reader: EventReader, session_keys: list[str], rate: float,
               seconds: float) -> list[Claimed]:
    """The traffic's guest.send commands, round robin over the sessions, claimed as the ingestion worker
    would (before the timed phase: claiming is the ingestion worker's work, not the guest worker's)."""
    total = int(rate * seconds)
    keys_ = [session_keys[i % len(session_keys)] for i in range(total)]
    planned = claim(records, [{"type": "guest.send", "idempotency_key": f"m-{i}-{key}", "session_key": key,
                               "text": f"msg {i}"} for i, key in enumerate(keys_)])
    while reader.poll(block_ms=1):
        pass  # past the command.accepted events of the claims
    return planned


def traffic(client: redis.Redis, planned: list[Claimed], rate: float) -> dict[str, float]:
    """Hand the planned sends over at ``rate`` per second. The events are read afterwards (their stream
    ids are the timestamps), so that while it is timed this process only appends to the guest stream:
    it shares its core with the emulator and redis-server, and a reader following the events live cost
    that core a fifth of itself, which no consumer of Parley's events puts next to Genesys or Redis in
    production."""
    sends: dict[str, float] = {}
    began = time.monotonic()
    for i, command in enumerate(planned):
        due = began + i / rate
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        sends |= hand_over(client, [command])
    return sends


# --- baseline: a bare client holding N sockets ------------------------------------------------------------


async def baseline(url: str, n: int, rate: float, seconds: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    proc = psutil.Process()
    rss_idle = proc.memory_info().rss
    socks: list[Any] = []
    sent_at: dict[str, float] = {}
    confirm: list[float] = []
    relay: list[float] = []
    configured = 0
    all_configured = asyncio.Event()

    async def reader(ws: Any) -> None:
        nonlocal configured
        async for data in ws:
            now_ms = time.time() * 1000
            frame = json.loads(data)
            body = frame.get("body") if isinstance(frame.get("body"), dict) else {}
            if frame.get("class") == "SessionResponse":
                configured += 1
                if configured == n:
                    all_configured.set()
            elif frame.get("class") == "StructuredMessage":
                if body.get("direction") == "Inbound" and frame.get("tracingId") in sent_at:
                    confirm.append(now_ms - sent_at.pop(frame["tracingId"]))
                elif body.get("direction") == "Outbound" and (body.get("text") or "").startswith("You said: "):
                    relay.append(now_ms - iso_ms(body["channel"]["time"]))

    began = time.monotonic()
    tasks = []
    tokens = []
    for i in range(0, n, 200):
        batch = await asyncio.gather(*(connect(url, compression=None, ping_interval=17, ping_timeout=20)
                                       for _ in range(min(200, n - i))))
        for ws in batch:
            token = str(uuid.uuid4())
            tokens.append(token)
            socks.append(ws)
            tasks.append(asyncio.create_task(reader(ws)))
            await ws.send(json.dumps({"action": "configureSession", "token": token, "deploymentId": DEPLOYMENT,
                                      "tracingId": str(uuid.uuid4())}))
    await asyncio.wait_for(all_configured.wait(), 120)
    start_s = time.monotonic() - began
    await asyncio.sleep(1.0)
    rss_open = proc.memory_info().rss
    cpu_before = cpu_seconds(proc)
    total = int(rate * seconds)
    t0 = time.monotonic()
    for i in range(total):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tracing_id = str(uuid.uuid4())
        k = i % n
        sent_at[tracing_id] = time.time() * 1000
        await socks[k].send(json.dumps({"action": "onMessage", "token": tokens[k], "tracingId": tracing_id,
                                        "message": {"type": "Text", "text": f"msg {i}"}}))
    cpu_pct = (cpu_seconds(proc) - cpu_before) / (time.monotonic() - t0) * 100
    await asyncio.sleep(3.0)
    for ws in socks:
        await ws.close()
    for task in tasks:
        task.cancel()
    return {"sessions": n, "start_all_s": round(start_s, 1), "rss_idle_mb": round(rss_idle / 2**20, 1),
            "rss_open_mb": round(rss_open / 2**20, 1), "kb_per_session": round((rss_open - rss_idle) / n / 1024, 1),
            "cpu_pct": round(cpu_pct), "sent": total, "confirmed": len(confirm), "send_to_confirm": summary(confirm),
            "agent_relay": summary(relay)}


def run_baseline(api_url: str, n: int, rate: float, seconds: float, cores: Cores | None) -> dict[str, Any]:
    url = api_url.replace("http://", "ws://") + f"/v1?deploymentId={DEPLOYMENT}"
    out = subprocess.run([sys.executable, __file__, "--baseline-client", url, "--sessions", str(n), "--rate",
                          str(rate), "--seconds", str(seconds)], capture_output=True, text=True, check=True,
                         cwd=ROOT, preexec_fn=cores.pin_child if cores else None)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", default="1000",
                        help="sessions; a comma-separated list runs each count in turn (fresh Redis and emulator)")
    parser.add_argument("--rate", type=float, default=500.0, help="guest messages per second, all sessions")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not give the worker (and the baseline client) a core of its own")
    parser.add_argument("--no-aof-rewrite", dest="aof_rewrite", action="store_false",
                        help="turn off redis-server's automatic AOF rewrites (as operators schedule them off-peak), "
                             "so no fork loads the emulator's core during traffic")
    parser.add_argument("--baseline-client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (bench/results.py)")
    args = parser.parse_args()
    raise_fd_limit()
    counts = [int(x) for x in str(args.sessions).split(",") if x.strip()]
    if args.baseline_client:
        use_fast_event_loop()  # the loop `parley guest` runs on
        print(json.dumps(asyncio.run(baseline(args.baseline_client, counts[0], args.rate, args.seconds))))
        return
    run = results.RunInfo.start()
    cores = plan_cores(args.pin)
    if cores:
        os.sched_setaffinity(0, cores.rest)  # redis-server and the emulator inherit it
    points, errors = [], []
    for sessions in counts:
        try:
            report = measure(sessions, args.rate, args.seconds, cores, args.aof_rewrite)
        except TimeoutError as exc:  # the counts measured so far are kept; larger ones would time out too
            errors.append(f"{sessions} sessions: {exc}; larger counts not run")
            print(errors[-1], file=sys.stderr)
            break
        print(json.dumps(report, indent=2))
        points.append(results.GuestPoint(sessions=sessions, rate_per_s=args.rate, seconds=args.seconds, **report))
    results.write(args.json, results.GuestResult(run=run.finish(), points=points, errors=errors))
    if errors:
        sys.exit(1)


def measure(sessions: int, rate: float, seconds: float, cores: Cores | None, aof_rewrite: bool) -> dict[str, Any]:
    """Both sides at one session count, against a fresh redis-server and emulator."""
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server, \
            running_emulator(EMULATOR_ENV) as emulator:
        assert server.process is not None
        if not aof_rewrite:
            redis.Redis.from_url(server.url).config_set("auto-aof-rewrite-percentage", 0)
        environment = {"emulator": psutil.Process(emulator.process.pid), "redis": psutil.Process(server.process.pid),
                       "load": psutil.Process()}
        parley = run_parley(server.url, emulator.base_url, sessions, rate, seconds, cores, environment)
        with contextlib.suppress(Exception):
            emulator.client().post("/__emulator/reset")
        base = run_baseline(emulator.base_url, sessions, rate, seconds, cores)
    isolation = {"worker_cores": sorted(cores.measured), "other_cores": sorted(cores.rest)} if cores else None
    return {"isolation": isolation, "parley": parley, "baseline": base, "ratio": {
        "memory_per_session": round(parley["kb_per_session"] / max(base["kb_per_session"], 0.1), 2),
        "confirm_p99": round(parley["send_to_confirm"]["p99_ms"] / max(base["send_to_confirm"]["p99_ms"], 0.1), 2),
        "relay_p99": round(parley["agent_relay"]["p99_ms"] / max(base["agent_relay"]["p99_ms"], 0.1), 2),
    }}


if __name__ == "__main__":
    main()
