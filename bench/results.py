"""Typed records of what each benchmark measured, written with ``--json PATH`` and read by bench/report.py.

One pydantic model per benchmark, each carrying :class:`RunInfo` (the exact command and the machine),
so a record on its own says what was run where. The human-readable printout of each script stays as
it was; the record is the same numbers in a form the report can plot.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

ROOT = Path(__file__).resolve().parents[1]


class _Record(BaseModel):
    # NaN (a percentile of no samples) written as NaN, not null, so the record reads back.
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")


class Machine(_Record):
    cores: int
    cpu_model: str
    memory_gb: float
    python: str
    platform: str

    @classmethod
    def here(cls) -> Machine:
        return cls(cores=os.cpu_count() or 0, cpu_model=_cpu_model(), memory_gb=round(_memory_bytes() / 2**30, 1),
                   python=platform.python_version(), platform=platform.platform(terse=True))

    def line(self) -> str:
        return (f"{self.cores} cores, {self.cpu_model}, {self.memory_gb:g} GiB memory, Python {self.python}, "
                f"{self.platform}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:  # pragma: no cover - psutil is a dependency of the benches
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def git_revision() -> str:
    """The commit measured, with ``+dirty`` when the working tree differs from it (``PARLEY_BENCH_REVISION``
    when set: a run from an exported tree, which has no .git)."""
    if revision := os.environ.get("PARLEY_BENCH_REVISION"):
        return revision
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class RunInfo(_Record):
    command: str = Field(description="The exact command line, as run from the repository root.")
    started_at: datetime
    seconds: float
    machine: Machine
    revision: str
    load_average: float | None = Field(
        default=None, description="The machine's 1-minute load average at the start: other work competing for it.")

    @classmethod
    def start(cls) -> RunInfo:
        """Called at a benchmark's start; :meth:`finish` fills in the duration."""
        argv = [os.path.relpath(sys.argv[0], ROOT) if os.path.isabs(sys.argv[0]) else sys.argv[0], *sys.argv[1:]]
        python = ".venv/bin/python" if Path(sys.executable).parent.parent.resolve() == (ROOT / ".venv").resolve() \
            else "python"
        return cls(command=shlex.join([python, *argv]), started_at=datetime.now(UTC), seconds=0.0,
                   machine=Machine.here(), revision=git_revision(), load_average=round(os.getloadavg()[0], 2))

    def finish(self) -> RunInfo:
        return self.model_copy(update={"seconds": round((datetime.now(UTC) - self.started_at).total_seconds(), 1)})


def without_json_flag(command: str) -> str:
    """The command as a user would retype it: without ``--json PATH`` (where the report put its record)."""
    parts = shlex.split(command)
    out: list[str] = []
    skip = False
    for part in parts:
        if skip:
            skip = False
        elif part == "--json":
            skip = True
        elif not part.startswith("--json="):
            out.append(part)
    return shlex.join(out)


# --- bench_pipeline ------------------------------------------------------------------------------------------


class CpuPerCommand(_Record):
    """CPU milliseconds per command, by process tree (redis, emulator, bench, ingest, celery worker)."""

    total_ms: float
    by_process_ms: dict[str, float]


class LatencySweepPoint(_Record):
    """Burst throughput at one Genesys latency: every round submits ``commands`` at once."""

    genesys_latency_ms: int
    bare_per_s: list[float]
    parley_per_s: list[float]
    bare_median_per_s: float
    parley_median_per_s: float
    ratio: float
    bare_cpu: CpuPerCommand
    parley_cpu: CpuPerCommand


class Percentiles(_Record):
    n: int
    p50_ms: float
    p99_ms: float


class LoadSide(_Record):
    """One side at one offered load: what completed, how fast, and how long each command took."""

    submitted: int
    completed: int
    offered_actual_per_s: float = Field(description="submitted / (last submission - first submission)")
    throughput_per_s: float = Field(description="completed / (last completion - first submission)")
    latency: Percentiles = Field(description="submission -> done, over every command of the point")


class LoadPoint(_Record):
    """Open loop: commands submitted at ``offered_per_s`` for ``seconds``, on both sides in turn."""

    offered_per_s: float
    seconds: float
    bare: LoadSide
    parley: LoadSide


class PipelineResult(_Record):
    bench: Literal["pipeline"] = "pipeline"
    run: RunInfo
    commands_per_round: int
    rounds: int
    concurrency: int
    latency_sweep: list[LatencySweepPoint]
    one_at_a_time_bare: Percentiles
    one_at_a_time_parley: Percentiles
    load_genesys_latency_ms: int
    load: list[LoadPoint]


# --- bench_ingest, bench_client_overhead, bench_ratelimit --------------------------------------------------------


class IngestResult(_Record):
    bench: Literal["ingest"] = "ingest"
    run: RunInfo
    commands_per_round: int
    rounds: int
    concurrency: int
    baseline_per_s: list[float]
    parley_per_s: list[float]
    baseline_median_per_s: float
    parley_median_per_s: float
    ratio: float


class ClientOverheadResult(_Record):
    bench: Literal["client_overhead"] = "client_overhead"
    run: RunInfo
    calls_per_round: int
    rounds: int
    bare_us: list[float]
    client_us: list[float]
    bare_median_us: float
    client_median_us: float
    overhead_us: float
    rate_limit_slot_us: float
    typed_parse_us: float
    ratio: float


class RateLimitResult(_Record):
    bench: Literal["ratelimit"] = "ratelimit"
    run: RunInfo
    limit_per_minute: int
    processes: int
    threads: int
    seconds: float
    overload: float
    offered_scheduled: float
    reached_acquire: int
    admitted: int
    budget: float
    fixed_minutes: list[int]
    would_be_429s: int
    budget_share: float
    admitted_times_s: list[float] = Field(description="Admission times, seconds from the start of the run.")


# --- bench_guest -------------------------------------------------------------------------------------------------


class GuestLatency(_Record):
    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float


class GuestSide(_Record):
    """One side (the Parley guest worker, or the bare websockets client) at one session count."""

    sessions: int
    start_all_s: float
    rss_idle_mb: float
    rss_open_mb: float
    kb_per_session: float
    cpu_pct: float
    sent: int
    confirmed: int
    send_to_confirm: GuestLatency
    agent_relay: GuestLatency
    failed: int = 0
    rss_after_traffic_mb: float | None = None
    environment_cpu_pct: dict[str, float] | None = None
    redis_forks_during_traffic: int | None = None
    redis_last_fork_ms: float | None = None
    redis_delayed_aof_fsyncs: int | None = None


class GuestPoint(_Record):
    sessions: int
    rate_per_s: float
    seconds: float
    isolation: dict[str, list[int]] | None
    parley: GuestSide
    baseline: GuestSide
    ratio: dict[str, float]


class GuestResult(_Record):
    bench: Literal["guest"] = "guest"
    run: RunInfo
    points: list[GuestPoint]
    errors: list[str] = Field(default=[], description="Session counts that could not be measured, and why.")


# --- bench_requests ---------------------------------------------------------------------------------------------


class RequestCase(_Record):
    """One command type in one situation: how many Genesys requests each command cost."""

    case: str
    command_type: str
    situation: str
    commands: int
    requests: int = Field(description="/api/v2 requests the emulator received during the case")
    token_requests: int = Field(description="/oauth/token requests during the case (not under the 300/min limit)")
    per_command: float
    minimum: int = Field(description="The fewest requests the command could cost in this situation")
    minimum_why: str
    by_route: dict[str, int] = Field(description="'METHOD /path/template' -> requests")
    failed: int = 0


class RequestsResult(_Record):
    bench: Literal["requests"] = "requests"
    run: RunInfo
    counted_by: str
    concurrency: int
    cases: list[RequestCase]


# --- bench_orgs, bench_lanes: a trickle beside a flood offered 3x the rate budget -------------------------------


class Latency95(_Record):
    """Submission (XADD) -> ``command.succeeded``, both on Redis' clock."""

    n: int
    p50_ms: float
    p95_ms: float
    max_ms: float


class BudgetUse(_Record):
    """Genesys requests the emulator served while the load was offered, against the budget of that window."""

    requests: int
    window_budget: float
    share: float
    http_429s: int = Field(description="429s Parley received (target 0)")


class OrgsMode(_Record):
    """One mode on a fresh stack: org B alone, then org B beside org A."""

    mode: str = Field(description="parked (the default bound) or waiting (every command waits in the worker)")
    rate_wait_max_s: str
    b_alone: Latency95
    b_beside: Latency95
    budget_use: dict[str, BudgetUse] = Field(description="By org alias, during the beside phase")


class OrgsResult(_Record):
    bench: Literal["orgs"] = "orgs"
    run: RunInfo
    budget_per_minute: int
    seconds: float
    concurrency: int
    org_a: str
    org_b: str
    org_a_offered: float = Field(description="Org A's offered load / its budget")
    org_b_offered: float
    modes: list[OrgsMode]


class LanesPhase(_Record):
    phase: str = Field(description="alone, beside (bulk at the overload) or unlaned (the trickle sent as bulk)")
    high: Latency95
    budget_use: BudgetUse


class LanesResult(_Record):
    bench: Literal["lanes"] = "lanes"
    run: RunInfo
    budget_per_minute: int
    slot_ms: float
    overload: float
    high_every_s: float
    seconds: float
    concurrency: int
    phases: list[LanesPhase]


# --- bench_sizing, bench_adoption -------------------------------------------------------------------------------


class SizingKeys(_Record):
    """What one key pattern changed by over a case, per unit (command, session or message)."""

    pattern: str
    type: str
    keys_per_unit: float
    gone_per_unit: float
    bytes_per_unit: int
    ttl_s: int = Field(description="The longest TTL left on a key of the kind; -1: none")


class SizingCase(_Record):
    name: str
    units: int
    unit: str = Field(description="command, session or message")
    used_memory_per_unit: int = Field(description="INFO used_memory after - before, per unit: the cross-check")
    key_bytes_per_unit: int = Field(description="MEMORY USAGE of the keys the case touched, per unit")
    keys: list[SizingKeys]
    cpu_ms_per_unit: dict[str, float] = Field(description="CPU ms per unit by process tree")


class SizingResult(_Record):
    bench: Literal["sizing"] = "sizing"
    run: RunInfo
    redis_version: str
    commands: int
    sessions: int
    celery_concurrency: int
    rss_mb: dict[str, list[float]] = Field(description="RSS of each process, then of each of its children")
    cases: list[SizingCase]


class AdoptionSends(_Record):
    """The ``guest.send`` commands given at the kill: each delivered once, each answer relayed once."""

    sent: int
    succeeded: int
    failed: int
    all_succeeded_s: float | None
    genesys_received: int
    genesys_received_twice: int
    answers_relayed: int
    answers_relayed_twice: int


class AdoptionResult(_Record):
    bench: Literal["adoption"] = "adoption"
    run: RunInfo
    sessions: int
    connect_per_minute: float
    connect_burst: int
    start_all_s: float
    adopted_all_s: float = Field(description="From the kill until every session has a socket opened after it")
    budget_s: float = Field(description="(sessions - burst) / rate: what the connection budget allows")
    target_s: float
    met: bool
    refused_upgrades: int
    sends: AdoptionSends


AnyRecord = PipelineResult | IngestResult | ClientOverheadResult | RateLimitResult | GuestResult | RequestsResult \
    | OrgsResult | LanesResult | SizingResult | AdoptionResult
AnyResult = Annotated[AnyRecord, Field(discriminator="bench")]


def write(path: str | Path | None, record: BaseModel) -> None:
    """Write ``record`` as JSON to ``path`` (nothing when no path was asked for)."""
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(record.model_dump_json(indent=2) + "\n")


def read(path: str | Path) -> AnyRecord:
    """The record in ``path``, of whichever benchmark's type its ``bench`` field names."""
    from pydantic import TypeAdapter

    record: AnyRecord = TypeAdapter(AnyResult).validate_json(Path(path).read_text())
    return record
