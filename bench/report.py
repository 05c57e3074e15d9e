"""Run every benchmark in bench/ and render bench/REPORT.md with its plots (bench/plots/*.png).

Each benchmark runs as its own process, exactly as a user would run it, with ``--json`` naming where
it writes its typed record (bench/results.py) in bench/data/. The report is then rendered from those
records alone, so ``--render-only`` redraws it from the last measurements without running anything.
Figures put Parley beside its baseline, measured side by side in the same run, with the ratio.

    .venv/bin/python -m bench.report                 # full sizes (each benchmark's defaults); long
    .venv/bin/python -m bench.report --quick         # small sizes, a few minutes
    .venv/bin/python -m bench.report --only requests --only ingest
    .venv/bin/python -m bench.report --render-only   # REPORT.md and plots from bench/data/*.json
    make bench [BENCH_QUICK=1]
"""

from __future__ import annotations

import argparse
import math
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import results  # noqa: E402
from bench.results import (  # noqa: E402
    AdoptionResult,
    ClientOverheadResult,
    GuestResult,
    IngestResult,
    LanesResult,
    Latency95,
    Machine,
    OrgsResult,
    PipelineResult,
    RateLimitResult,
    RequestsResult,
    SizingResult,
)

BENCH = ROOT / "bench"
DATA = BENCH / "data"
PLOTS = BENCH / "plots"
REPORT = BENCH / "REPORT.md"


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    full: tuple[str, ...]  # beyond the script's own defaults (which are the full sizes)
    quick: tuple[str, ...]


BENCHMARKS = (
    Benchmark("requests", "bench/bench_requests.py", (), ("--commands", "20")),
    Benchmark("pipeline", "bench/bench_pipeline.py", (),
              ("--commands", "100", "--rounds", "1", "--latency-samples", "20", "--genesys-latency-ms", "0,50",
               "--load-rates", "25,75,150", "--load-seconds", "3")),
    Benchmark("guest", "bench/bench_guest.py", ("--sessions", "100,1000,10000"),
              ("--sessions", "50,200,500", "--rate", "100", "--seconds", "5")),
    Benchmark("ingest", "bench/bench_ingest.py", (), ("--commands", "500", "--rounds", "1")),
    Benchmark("client_overhead", "bench/bench_client_overhead.py", (), ("--calls", "100", "--rounds", "2")),
    Benchmark("ratelimit", "bench/bench_ratelimit.py", (), ("--seconds", "10")),
    Benchmark("orgs", "bench/bench_orgs.py", (), ("--seconds", "10")),
    Benchmark("lanes", "bench/bench_lanes.py", ("--budget", "300", "--seconds", "60"), ("--seconds", "10")),
    Benchmark("sizing", "bench/bench_sizing.py", ("--commands", "1000", "--sessions", "300"),
              ("--commands", "20", "--sessions", "5")),
    Benchmark("adoption", "bench/bench_adoption.py", (), ("--sessions", "200", "--with-commands", "10")),
)


class Meta(BaseModel):
    """How the report's measurements were last produced (bench/data/meta.json)."""

    model_config = ConfigDict(extra="forbid")
    command: str
    quick: bool
    generated_at: datetime
    machine: Machine
    failed: list[str] = []


@dataclass
class Results:
    """What the report is rendered from: any subset of the benchmarks' records."""

    requests: RequestsResult | None = None
    pipeline: PipelineResult | None = None
    guest: GuestResult | None = None
    ingest: IngestResult | None = None
    client_overhead: ClientOverheadResult | None = None
    ratelimit: RateLimitResult | None = None
    orgs: OrgsResult | None = None
    lanes: LanesResult | None = None
    sizing: SizingResult | None = None
    adoption: AdoptionResult | None = None

    def records(self) -> list[results.AnyRecord]:
        """The records there are, in the order of BENCHMARKS."""
        return [r for b in BENCHMARKS if (r := getattr(self, b.name)) is not None]

    @classmethod
    def load(cls, data: Path) -> Results:
        out = cls()
        for bench in BENCHMARKS:
            path = data / f"{bench.name}.json"
            if path.exists():
                try:
                    setattr(out, bench.name, results.read(path))
                except ValidationError as exc:
                    print(f"report: {path} is not a {bench.name} record ({exc.error_count()} errors); skipped",
                          file=sys.stderr)
        return out


# --- running ----------------------------------------------------------------------------------------------------


def run_benchmarks(names: Sequence[str], quick: bool, data: Path) -> list[str]:
    """Run the benchmarks (their printout goes to the terminal as usual); the names of those that failed."""
    data.mkdir(parents=True, exist_ok=True)
    failed = []
    for bench in BENCHMARKS:
        if bench.name not in names:
            continue
        out = data / f"{bench.name}.json"
        argv = [sys.executable, bench.script, *(bench.quick if quick else bench.full), "--json", str(out)]
        print(f"== {bench.script} {shlex.join(argv[2:-2])}", flush=True)
        started = datetime.now(UTC)
        code = subprocess.run(argv, cwd=ROOT).returncode
        if code != 0 or not out.exists() or datetime.fromtimestamp(out.stat().st_mtime, UTC) < started:
            # A record written anyway (bench_guest keeps the counts it measured) is still rendered.
            print(f"== {bench.script} FAILED (exit {code})", flush=True)
            failed.append(bench.name)
    return failed


# --- plots ------------------------------------------------------------------------------------------------------

PARLEY_STYLE = {"color": "#1f77b4", "marker": "o"}
BASE_STYLE = {"color": "#7f7f7f", "marker": "s", "linestyle": "--"}


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    return plt


def _ratio_figure(title: str, xlabel: str, ylabel: str, ratio_label: str):  # type: ignore[no-untyped-def]
    """A figure of two panels sharing x: the values of both sides above, Parley / baseline below."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 6.2), sharex=True,
                                      gridspec_kw={"height_ratios": [2.2, 1]})
    top.set_title("\n".join(textwrap.fill(part, 80) for part in title.split("\n")), fontsize=10)
    top.set_ylabel(ylabel)
    top.grid(True, alpha=0.3)
    bottom.set_xlabel(xlabel)
    bottom.set_ylabel(ratio_label)
    bottom.axhline(1.0, color="black", linewidth=0.8, alpha=0.6)
    bottom.grid(True, alpha=0.3)
    return fig, top, bottom


def _save(fig, path: Path) -> Path:  # type: ignore[no-untyped-def]
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    _pyplot().close(fig)
    return path


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")


def _log_y(ax) -> None:  # type: ignore[no-untyped-def]
    """A log y axis labelled in plain numbers (1, 2, 5, 10, 20, ...) rather than powers of ten."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _log_x_if_wide(ax, xs: Sequence[float]) -> None:  # type: ignore[no-untyped-def]
    positive = [x for x in xs if x > 0]
    if positive and max(positive) / min(positive) >= 20:
        ax.set_xscale("log")


def plot_requests(r: RequestsResult, out: Path) -> Path:
    plt = _pyplot()
    cases = r.cases
    fig, ax = plt.subplots(figsize=(8.5, 0.55 * len(cases) + 1.8))
    ys = range(len(cases))
    ax.barh([y + 0.2 for y in ys], [c.per_command for c in cases], height=0.4, color=PARLEY_STYLE["color"],
            label="Parley (counted by the emulator)")
    ax.barh([y - 0.2 for y in ys], [c.minimum for c in cases], height=0.4, color=BASE_STYLE["color"],
            label="minimum possible")
    for y, c in zip(ys, cases, strict=True):
        note = f"{c.per_command:.2f}" + (f"  ({c.per_command / c.minimum:.1f}x)" if c.minimum else "")
        ax.text(c.per_command + 0.04, y + 0.2, note, va="center", fontsize=8)
    ax.set_yticks(list(ys), [c.case for c in cases], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("Genesys requests per command (/api/v2; budget: 300 per minute per OAuth client)")
    ax.set_xlim(0, max([c.per_command for c in cases] + [1]) * 1.3)
    ax.set_title(f"Genesys requests per command, steady state ({cases[0].commands if cases else 0} commands "
                 "per case)", fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, out / "requests_per_command.png")


def plot_pipeline_load_throughput(r: PipelineResult, out: Path) -> Path:
    xs = [p.offered_per_s for p in r.load]
    fig, top, bottom = _ratio_figure(
        f"message.send, open loop: throughput against offered load (Genesys latency {r.load_genesys_latency_ms} ms, "
        f"Celery concurrency {r.concurrency})", "offered load (commands/s)", "completed commands/s",
        "Parley / bare")
    top.plot(xs, xs, color="black", linewidth=0.8, alpha=0.4, label="offered")
    top.plot(xs, [p.parley.throughput_per_s for p in r.load], label="Parley (whole pipeline)", **PARLEY_STYLE)
    top.plot(xs, [p.bare.throughput_per_s for p in r.load], label="bare Celery task (baseline)", **BASE_STYLE)
    top.legend(fontsize=8)
    bottom.plot(xs, [_ratio(p.parley.throughput_per_s, p.bare.throughput_per_s) for p in r.load], **PARLEY_STYLE)
    bottom.set_ylim(0, 1.2)
    return _save(fig, out / "pipeline_throughput_vs_load.png")


def plot_pipeline_load_latency(r: PipelineResult, out: Path) -> Path:
    xs = [p.offered_per_s for p in r.load]
    fig, top, bottom = _ratio_figure(
        f"message.send, open loop: latency (submit -> done) against offered load "
        f"(Genesys latency {r.load_genesys_latency_ms} ms)", "offered load (commands/s)", "latency (ms, log)",
        "Parley / bare (p50, p99)")
    top.plot(xs, [p.parley.latency.p50_ms for p in r.load], label="Parley p50", **PARLEY_STYLE)
    top.plot(xs, [p.parley.latency.p99_ms for p in r.load], label="Parley p99", color=PARLEY_STYLE["color"],
             marker="^", alpha=0.6)
    top.plot(xs, [p.bare.latency.p50_ms for p in r.load], label="bare p50", **BASE_STYLE)
    top.plot(xs, [p.bare.latency.p99_ms for p in r.load], label="bare p99", color=BASE_STYLE["color"], marker="v",
             linestyle=":", alpha=0.7)
    _log_y(top)
    top.legend(fontsize=8)
    bottom.plot(xs, [_ratio(p.parley.latency.p50_ms, p.bare.latency.p50_ms) for p in r.load], label="p50",
                **PARLEY_STYLE)
    bottom.plot(xs, [_ratio(p.parley.latency.p99_ms, p.bare.latency.p99_ms) for p in r.load], label="p99",
                color=PARLEY_STYLE["color"], marker="^", alpha=0.6)
    _log_y(bottom)
    bottom.legend(fontsize=8)
    return _save(fig, out / "pipeline_latency_vs_load.png")


def plot_pipeline_genesys_latency(r: PipelineResult, out: Path) -> Path:
    xs = [p.genesys_latency_ms for p in r.latency_sweep]
    fig, top, bottom = _ratio_figure(
        f"message.send, bursts of {r.commands_per_round}: throughput against Genesys latency "
        f"(median of {r.rounds} rounds)", "Genesys latency (ms)", "commands/s", "Parley / bare")
    top.plot(xs, [p.parley_median_per_s for p in r.latency_sweep], label="Parley", **PARLEY_STYLE)
    top.plot(xs, [p.bare_median_per_s for p in r.latency_sweep], label="bare Celery task", **BASE_STYLE)
    top.legend(fontsize=8)
    bottom.plot(xs, [p.ratio for p in r.latency_sweep], **PARLEY_STYLE)
    bottom.set_ylim(0, 1.2)
    return _save(fig, out / "pipeline_throughput_vs_genesys_latency.png")


def plot_guest_latency(r: GuestResult, out: Path, which: str) -> Path:
    points = sorted(r.points, key=lambda p: p.sessions)
    xs = [p.sessions for p in points]
    label = {"agent_relay": "agent message -> guest.message event (relay)",
             "send_to_confirm": "guest.send -> command.succeeded (confirm)"}[which]
    rate = points[0].rate_per_s if points else 0
    fig, top, bottom = _ratio_figure(f"Guest worker: {label}\nagainst sessions held ({rate:g} messages/s in all)",
                                     "sessions", "latency (ms)", "Parley / bare (p50, p99)")
    side = {p.sessions: (getattr(p.parley, which), getattr(p.baseline, which)) for p in points}
    top.plot(xs, [side[x][0].p50_ms for x in xs], label="Parley p50", **PARLEY_STYLE)
    top.plot(xs, [side[x][0].p99_ms for x in xs], label="Parley p99", color=PARLEY_STYLE["color"], marker="^",
             alpha=0.6)
    top.plot(xs, [side[x][1].p50_ms for x in xs], label="bare websockets client p50", **BASE_STYLE)
    top.plot(xs, [side[x][1].p99_ms for x in xs], label="bare client p99", color=BASE_STYLE["color"], marker="v",
             linestyle=":", alpha=0.7)
    top.legend(fontsize=8)
    bottom.plot(xs, [_ratio(side[x][0].p50_ms, side[x][1].p50_ms) for x in xs], label="p50", **PARLEY_STYLE)
    bottom.plot(xs, [_ratio(side[x][0].p99_ms, side[x][1].p99_ms) for x in xs], label="p99",
                color=PARLEY_STYLE["color"], marker="^", alpha=0.6)
    bottom.legend(fontsize=8)
    for ax in (top, bottom):
        _log_x_if_wide(ax, xs)
    name = "guest_relay_latency_vs_sessions.png" if which == "agent_relay" else "guest_confirm_latency_vs_sessions.png"
    return _save(fig, out / name)


def plot_guest_memory(r: GuestResult, out: Path) -> Path:
    points = sorted(r.points, key=lambda p: p.sessions)
    xs = [p.sessions for p in points]
    fig, top, bottom = _ratio_figure("Guest worker: memory per session (RSS with the sessions open - idle) / sessions",
                                     "sessions", "KiB per session", "Parley / bare")
    top.plot(xs, [p.parley.kb_per_session for p in points], label="Parley guest worker", **PARLEY_STYLE)
    top.plot(xs, [p.baseline.kb_per_session for p in points], label="bare websockets client", **BASE_STYLE)
    top.legend(fontsize=8)
    bottom.plot(xs, [_ratio(p.parley.kb_per_session, p.baseline.kb_per_session) for p in points], **PARLEY_STYLE)
    for ax in (top, bottom):
        _log_x_if_wide(ax, xs)
    return _save(fig, out / "guest_memory_vs_sessions.png")


def plot_ratelimit(r: RateLimitResult, out: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    times = sorted(r.admitted_times_s)
    ax.step(times, range(1, len(times) + 1), where="post", label="admitted by the shared limiter",
            color=PARLEY_STYLE["color"])
    ax.plot([0, r.seconds], [0, r.limit_per_minute * r.seconds / 60], color="black", linestyle="--", linewidth=0.8,
            label=f"budget ({r.limit_per_minute}/min)")
    ax.plot([0, r.seconds], [0, r.overload * r.limit_per_minute * r.seconds / 60], color=BASE_STYLE["color"],
            linestyle=":", label=f"offered ({r.overload:g}x)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("requests, cumulative")
    ax.set_title(f"Fleet rate limiter: {r.processes} processes x {r.threads} threads; share of budget used "
                 f"{r.budget_share:.3f}, would-be 429s {r.would_be_429s}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "ratelimit_admissions.png")


def render_plots(res: Results, out: Path) -> dict[str, Path]:
    plots: dict[str, Path] = {}
    if res.requests and res.requests.cases:
        plots["requests"] = plot_requests(res.requests, out)
    if res.pipeline:
        if res.pipeline.load:
            plots["load_throughput"] = plot_pipeline_load_throughput(res.pipeline, out)
            plots["load_latency"] = plot_pipeline_load_latency(res.pipeline, out)
        if res.pipeline.latency_sweep:
            plots["genesys_latency"] = plot_pipeline_genesys_latency(res.pipeline, out)
    if res.guest and res.guest.points:
        plots["guest_relay"] = plot_guest_latency(res.guest, out, "agent_relay")
        plots["guest_confirm"] = plot_guest_latency(res.guest, out, "send_to_confirm")
        plots["guest_memory"] = plot_guest_memory(res.guest, out)
    if res.ratelimit and res.ratelimit.admitted_times_s:
        plots["ratelimit"] = plot_ratelimit(res.ratelimit, out)
    return plots


# --- markdown ---------------------------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else f"{v:,.2f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.0f}"
        return str(v).replace("|", "\\|")

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows), ""]


def _img(plots: dict[str, Path], key: str, alt: str, report_dir: Path) -> list[str]:
    if key not in plots:
        return []
    return [f"![{alt}]({plots[key].relative_to(report_dir).as_posix()})", ""]


def _run_line(run: results.RunInfo) -> str:
    load = "" if run.load_average is None else f", load average {run.load_average:g} at the start"
    return (f"Command: `{results.without_json_flag(run.command)}` (revision {run.revision}, "
            f"{run.started_at:%Y-%m-%d %H:%M} UTC, {run.seconds:.0f} s{load})")


def section_requests(r: RequestsResult, plots: dict[str, Path], report_dir: Path) -> list[str]:
    lines = ["## Genesys requests per command", "",
             "Genesys allows **300 requests per minute per OAuth client**: what a command costs in requests "
             "bounds how many commands a deployment can carry. Counted in steady state (token held, caches "
             f"warm) by the emulator over {r.cases[0].commands if r.cases else 0} commands per case, against "
             "the fewest requests the command could possibly cost while doing what it promises.", "",
             _run_line(r.run), "", f"Counted by {r.counted_by}.", ""]
    lines += _img(plots, "requests", "Genesys requests per command", report_dir)
    rows = []
    for c in r.cases:
        ratio = f"{c.per_command / c.minimum:.2f}x" if c.minimum else ("0 = 0" if c.per_command == 0 else "above 0")
        routes = "; ".join(f"{route} x{n / c.commands:g}" for route, n in c.by_route.items()) or "none"
        commands_per_minute = f"{300 / c.per_command:,.0f}" if c.per_command else "unbounded"
        rows.append([f"`{c.command_type}`", c.situation, f"**{c.per_command:g}**", c.minimum, ratio,
                     commands_per_minute, routes + (f" ({c.failed} failed)" if c.failed else "")])
    lines += _table(["command", "situation", "Parley requests/command", "minimum", "Parley / minimum",
                     "commands/min under 300 req/min", "requests per command, by route"], rows)
    lines += ["Why each minimum:", ""]
    lines += [f"* {c.case}: {c.minimum} — {c.minimum_why}" for c in r.cases]
    token = sum(c.token_requests for c in r.cases)
    lines += ["", f"Token requests (`POST /oauth/token`) during the cases: {token}.", ""]
    return lines


def section_pipeline(r: PipelineResult, plots: dict[str, Path], report_dir: Path) -> list[str]:
    lines = ["## Pipeline: `message.send` end to end", "",
             "Parley's whole path (XADD -> ingest -> Celery -> runner -> handler -> emulator -> events) against a "
             "bare Celery task making the same single emulator call, same redis-server, same emulator, "
             f"Celery concurrency {r.concurrency} on both sides.", "", _run_line(r.run), ""]
    if r.load:
        lines += [f"### Throughput and latency against offered load (Genesys latency {r.load_genesys_latency_ms} ms)",
                  "", "Open loop: commands submitted at a steady rate, each side in turn; throughput is completed / "
                  "(last completion - first submission), latency is submission -> done.", ""]
        lines += _img(plots, "load_throughput", "throughput against offered load", report_dir)
        lines += _img(plots, "load_latency", "latency against offered load", report_dir)
        rows = [[p.offered_per_s, p.seconds, p.bare.throughput_per_s, p.parley.throughput_per_s,
                 _ratio(p.parley.throughput_per_s, p.bare.throughput_per_s), p.bare.latency.p50_ms,
                 p.parley.latency.p50_ms, p.bare.latency.p99_ms, p.parley.latency.p99_ms,
                 f"{p.parley.completed}/{p.parley.submitted}"] for p in r.load]
        lines += _table(["offered/s", "s", "bare/s", "Parley/s", "throughput ratio", "bare p50 ms", "Parley p50 ms",
                         "bare p99 ms", "Parley p99 ms", "Parley completed"], rows)
    if r.latency_sweep:
        lines += ["### Burst throughput against Genesys latency", "",
                  f"Bursts of {r.commands_per_round} commands, median of {r.rounds} alternating rounds; the emulator "
                  "delays the agentless call by the Genesys latency.", ""]
        lines += _img(plots, "genesys_latency", "throughput against Genesys latency", report_dir)
        rows = [[p.genesys_latency_ms, p.bare_median_per_s, p.parley_median_per_s, p.ratio, p.bare_cpu.total_ms,
                 p.parley_cpu.total_ms] for p in r.latency_sweep]
        lines += _table(["Genesys latency ms", "bare/s", "Parley/s", "ratio", "bare CPU ms/command",
                         "Parley CPU ms/command"], rows)
        last = r.latency_sweep[0]
        lines += [f"CPU per command by process at {last.genesys_latency_ms} ms: Parley "
                  + ", ".join(f"{k} {v:g}" for k, v in last.parley_cpu.by_process_ms.items())
                  + "; bare " + ", ".join(f"{k} {v:g}" for k, v in last.bare_cpu.by_process_ms.items()) + ".", ""]
    b, p = r.one_at_a_time_bare, r.one_at_a_time_parley
    lines += ["### One command at a time (Genesys answering at once)", ""]
    lines += _table(["", "p50 ms", "p99 ms", "samples"],
                    [["bare", b.p50_ms, b.p99_ms, b.n], ["Parley", p.p50_ms, p.p99_ms, p.n],
                     ["added by Parley", round(p.p50_ms - b.p50_ms, 1), round(p.p99_ms - b.p99_ms, 1), ""]])
    return lines


def section_guest(r: GuestResult, plots: dict[str, Path], report_dir: Path) -> list[str]:
    points = sorted(r.points, key=lambda p: p.sessions)
    lines = ["## Guest worker: sessions held by one process", "",
             "N web messaging sessions with traffic in one `parley guest` process against a bare websockets client "
             "holding the same N sockets and doing the same exchange (one after the other, same emulator, same "
             "rate).", "", _run_line(r.run), ""]
    if points and points[0].isolation:
        lines += [f"Isolation: the measured process on core(s) {points[0].isolation.get('worker_cores')}, "
                  f"everything else on {points[0].isolation.get('other_cores')}.", ""]
    lines += [f"**Not measured**: {error}" for error in r.errors] + ([""] if r.errors else [])
    lines += _img(plots, "guest_relay", "guest relay latency against sessions", report_dir)
    lines += _img(plots, "guest_memory", "guest memory against sessions", report_dir)
    lines += _img(plots, "guest_confirm", "guest confirm latency against sessions", report_dir)
    rows = [[p.sessions, p.rate_per_s, p.parley.agent_relay.p50_ms, p.baseline.agent_relay.p50_ms,
             p.parley.agent_relay.p99_ms, p.baseline.agent_relay.p99_ms, p.parley.send_to_confirm.p99_ms,
             p.baseline.send_to_confirm.p99_ms, p.parley.kb_per_session, p.baseline.kb_per_session,
             p.parley.cpu_pct, p.baseline.cpu_pct, f"{p.parley.confirmed}/{p.parley.sent}",
             p.parley.start_all_s] for p in points]
    lines += _table(["sessions", "msg/s", "relay p50 Parley", "relay p50 bare", "relay p99 Parley", "relay p99 bare",
                     "confirm p99 Parley", "confirm p99 bare", "KiB/session Parley", "KiB/session bare",
                     "CPU % Parley", "CPU % bare", "Parley confirmed", "Parley start all (s)"], rows)
    lines += ["Latencies in ms. Relay: the agent's message time (stamped by the emulator) -> the `guest.message` "
              "event in Redis (Parley) or the frame's arrival (bare). Confirm: `guest.send` on the guest stream -> "
              "`command.succeeded` (Parley) or send -> the Inbound echo (bare).", ""]
    return lines


def section_small(res: Results, plots: dict[str, Path], report_dir: Path) -> list[str]:
    lines: list[str] = []
    if (i := res.ingest) is not None:
        lines += ["## Ingestion: XADD -> Celery task started", "",
                  f"Against bare XADD + XREADGROUP + XACK on the same redis-server; {i.commands_per_round} commands "
                  f"per round, {i.rounds} rounds, Celery concurrency {i.concurrency}.", "", _run_line(i.run), ""]
        lines += _table(["", "commands/s (median)", "rounds"],
                        [["bare XADD+XREADGROUP+XACK", i.baseline_median_per_s, str(i.baseline_per_s)],
                         ["Parley", i.parley_median_per_s, str(i.parley_per_s)],
                         ["ratio Parley / bare", i.ratio, ""]])
    if (c := res.client_overhead) is not None:
        lines += ["## Genesys client overhead per call", "",
                  f"`GET /api/v2/conversations/{{id}}` on the emulator over loopback, {c.rounds} rounds x "
                  f"{c.calls_per_round} calls each side, alternating.", "", _run_line(c.run), ""]
        lines += _table(["", "µs/call (median of round medians)"],
                        [["bare httpx", c.bare_median_us], ["GenesysClient", c.client_median_us],
                         ["overhead", c.overhead_us], ["  of which rate-limit slot (alone)", c.rate_limit_slot_us],
                         ["  of which typed parse (alone)", c.typed_parse_us], ["ratio client / bare", c.ratio]])
    if (rl := res.ratelimit) is not None:
        lines += ["## Fleet rate limiter", "",
                  f"{rl.processes} processes x {rl.threads} threads offering {rl.overload:g}x a limit of "
                  f"{rl.limit_per_minute}/min for {rl.seconds:g} s; the baseline is the budget itself.", "",
                  _run_line(rl.run), ""]
        lines += _img(plots, "ratelimit", "rate limiter admissions", report_dir)
        lines += _table(["offered (scheduled)", "admitted", "budget", "share of budget used", "would-be 429s",
                         "fixed minutes"],
                        [[rl.offered_scheduled, rl.admitted, rl.budget, rl.budget_share, rl.would_be_429s,
                          str(rl.fixed_minutes)]])
    return lines


def _titled(title: str, about: str, run: results.RunInfo, *tables: list[str]) -> list[str]:
    """A section of the report: its title, what was measured against what, the command, then its tables."""
    return [f"## {title}", "", about, "", _run_line(run), "", *(line for table in tables for line in table)]


BESIDE_HEADER = ["p50 alone ms", "p50 beside ms", "p50 ratio", "p95 alone ms", "p95 beside ms", "p95 ratio"]


def _beside(alone: Latency95, beside: Latency95) -> list[object]:
    """p50 and p95 of the baseline (alone) and of the measured run (beside), each with beside / alone."""
    return [alone.p50_ms, beside.p50_ms, _ratio(beside.p50_ms, alone.p50_ms),
            alone.p95_ms, beside.p95_ms, _ratio(beside.p95_ms, alone.p95_ms)]


def _share(use: results.BudgetUse) -> str:
    return f"{use.share:.1%} ({use.requests} of {use.window_budget:g})"


def section_orgs(r: OrgsResult) -> list[str]:
    a, b = r.org_a, r.org_b
    rows = [[f"{m.mode} (wait max {m.rate_wait_max_s} s)", *_beside(m.b_alone, m.b_beside),
             _share(m.budget_use[a]), _share(m.budget_use[b]),
             f"{m.budget_use[a].http_429s} / {m.budget_use[b].http_429s}"] for m in r.modes]
    return _titled(
        "Two orgs: org B beside org A at 3x its budget",
        f"One Celery worker (concurrency {r.concurrency}) for two orgs, each against its own emulator limiting its "
        f"token to {r.budget_per_minute}/min. Org B ({b}) offered {r.org_b_offered:g}x its budget alone (the "
        f"baseline), then beside org A ({a}) offered {r.org_a_offered:g}x, {r.seconds:g} s each; org B's latency "
        "(target: beside / alone <= 1.10), each org's budget used beside, 429s. Mode `waiting` is the way before "
        "parking: every command waits for its slot in the worker.",
        r.run,
        _table(["mode", *(f"org B {h}" for h in BESIDE_HEADER), "org A budget used", "org B budget used",
                "429s A / B"], rows))


def section_lanes(r: LanesResult) -> list[str]:
    alone = next((p.high for p in r.phases if p.phase == "alone"), None)
    if alone is None:
        return []
    rows = [[p.phase, *_beside(alone, p.high), (p.high.p95_ms - alone.p95_ms) / r.slot_ms, _share(p.budget_use),
             p.budget_use.http_429s] for p in r.phases]
    return _titled(
        "Priority lanes: high beside bulk at 3x the budget",
        f"One `high` command every {r.high_every_s:g} s alone (the baseline), then beside `bulk` offered "
        f"{r.overload:g}x a budget of {r.budget_per_minute}/min (a slot every {r.slot_ms:g} ms), then the same with "
        f"the trickle sent as `bulk` (unlaned: no lanes); {r.seconds:g} s each, Celery concurrency {r.concurrency}. "
        "Targets: p95 within 2 slots of alone, budget used >= 95%, no 429s.",
        r.run,
        _table(["phase", *(f"high {h}" for h in BESIDE_HEADER), "p95 wait beyond alone (slots)", "budget used",
                "429s"], rows))


def section_sizing(r: SizingResult) -> list[str]:
    rows = [[c.name, c.units, c.unit, c.key_bytes_per_unit, c.used_memory_per_unit,
             _ratio(c.key_bytes_per_unit, c.used_memory_per_unit), sum(c.cpu_ms_per_unit.values()),
             ", ".join(f"{p} {ms:g}" for p, ms in c.cpu_ms_per_unit.items()),
             "; ".join(f"{k.pattern} {k.bytes_per_unit} B" for k in c.keys[:3])] for c in r.cases]
    return _titled(
        "Sizing: Redis memory and CPU per command and per guest session",
        f"The real product on loopback (redis-server {r.redis_version}, Celery concurrency {r.celery_concurrency}), "
        f"{r.commands} commands per REST case and {r.sessions} guest sessions; Redis compared before and after each "
        "case, once the workers are idle. Bytes in keys (`MEMORY USAGE`, every element) beside `used_memory` "
        "(`INFO memory`, the allocator's view) as the cross-check; no baseline (absolute figures). CPU figures "
        "depend on the machine's load, memory figures do not.",
        r.run,
        _table(["case", "units", "per", "bytes in keys", "used_memory", "keys / used_memory", "CPU ms",
                "CPU ms by process", "largest keys"], rows))


def section_adoption(r: AdoptionResult) -> list[str]:
    s = r.sends
    rows = [[r.sessions, r.adopted_all_s, r.budget_s, _ratio(r.adopted_all_s, r.budget_s), r.target_s,
             "yes" if r.met else "**no**", r.refused_upgrades, f"{s.succeeded}/{s.sent}",
             "n/a" if s.all_succeeded_s is None else s.all_succeeded_s, f"{s.genesys_received}/{s.sent}",
             f"{s.answers_relayed}/{s.sent}", f"{s.genesys_received_twice} / {s.answers_relayed_twice}"]]
    return _titled(
        "Guest adoption after a worker is killed",
        f"A `parley guest` worker holding {r.sessions} web messaging sessions is SIGKILLed; another adopts them "
        f"within the deployment's connection budget ({r.connect_per_minute:g}/min, burst {r.connect_burst}). The "
        "baseline is the time the budget allows, (sessions - burst) / rate (target: within it + 15 s); "
        f"{s.sent} sessions get a `guest.send` at the kill, each to reach Genesys once and be answered once.",
        r.run,
        _table(["sessions", "adopted all (s)", "budget allows (s)", "adopted / budget", "target (s)", "met",
                "refused upgrades", "sends succeeded", "all sends done (s)", "received by Genesys",
                "answers relayed", "received twice / relayed twice"], rows))


def render_markdown(res: Results, plots: dict[str, Path], meta: Meta | None, report_dir: Path) -> str:
    records = res.records()
    machines = {r.run.machine.line() for r in records}
    lines = ["# Parley benchmark report", "",
             "<!-- Generated file: do not edit by hand. -->",
             "**Generated** by `" + (meta.command if meta else "python -m bench.report") + "` "
             "(`bench/report.py`: it runs every benchmark in bench/ with `--json` into bench/data/ and renders this "
             "file and bench/plots/*.png from those records; `python -m bench.report --render-only` redraws them "
             "without measuring). Do not edit by hand.", ""]
    if meta:
        mode = "quick (small sizes: a check that everything runs, not figures to quote)" if meta.quick else \
            "full (each benchmark's default sizes)"
        lines += [f"* Mode: {mode}", f"* Generated: {meta.generated_at:%Y-%m-%d %H:%M} UTC"]
        if meta.failed:
            lines.append(f"* **Failed or incomplete**: {', '.join(meta.failed)} (each section names its own run: "
                         "what it measured, and what it could not)")
    lines += [f"* Machine: {m}" for m in sorted(machines)] or ["* Machine: " + Machine.here().line()]
    loads = [r.run.load_average for r in records if r.run.load_average is not None]
    if loads and max(loads) > (records[0].run.machine.cores or 1):
        lines.append(f"* **The machine was busy**: its load average reached {max(loads):g} on "
                     f"{records[0].run.machine.cores} cores at the start of a benchmark (other work competing for the "
                     "CPU); absolute figures are low and noisy, ratios less so.")
    lines += ["* Every figure puts Parley beside a baseline measured side by side in the same run, and the ratio "
              "Parley / baseline (throughput: higher is better; latency and memory: lower is better).", ""]
    lines += ["Commands run (from the repository root):", ""]
    lines += [f"* `{results.without_json_flag(r.run.command)}`" for r in records]
    lines.append("")
    if res.requests:
        lines += section_requests(res.requests, plots, report_dir)
    if res.pipeline:
        lines += section_pipeline(res.pipeline, plots, report_dir)
    if res.guest:
        lines += section_guest(res.guest, plots, report_dir)
    lines += section_small(res, plots, report_dir)
    if res.orgs:
        lines += section_orgs(res.orgs)
    if res.lanes:
        lines += section_lanes(res.lanes)
    if res.sizing:
        lines += section_sizing(res.sizing)
    if res.adoption:
        lines += section_adoption(res.adoption)
    return "\n".join(lines).rstrip() + "\n"


def render(res: Results, report: Path, plots_dir: Path, meta: Meta | None = None) -> dict[str, Path]:
    """Write ``report`` (markdown) and the PNGs in ``plots_dir``; the plots written, by key."""
    plots = render_plots(res, plots_dir)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render_markdown(res, plots, meta, report.parent))
    return plots


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole run takes a few minutes")
    parser.add_argument("--only", action="append", choices=[b.name for b in BENCHMARKS],
                        help="run only this benchmark (repeatable); the report keeps the others' last results")
    parser.add_argument("--render-only", action="store_true", help="render from bench/data/*.json, run nothing")
    parser.add_argument("--command", help="how this run was invoked, for the report's header (make bench sets it)")
    args = parser.parse_args(argv)
    meta_path = DATA / "meta.json"
    failed: list[str] = []
    if args.render_only:
        meta = Meta.model_validate_json(meta_path.read_text()) if meta_path.exists() else None
    else:
        names = args.only or [b.name for b in BENCHMARKS]
        failed = run_benchmarks(names, args.quick, DATA)
        command = args.command or shlex.join(["python", "-m", "bench.report", *(argv or sys.argv[1:])])
        meta = Meta(command=command, quick=args.quick, generated_at=datetime.now(UTC), machine=Machine.here(),
                    failed=failed)
        meta_path.write_text(meta.model_dump_json(indent=2) + "\n")
    plots = render(Results.load(DATA), REPORT, PLOTS, meta)
    print(f"report: {REPORT}, plots: {', '.join(p.name for p in plots.values()) or 'none'}")
    if failed:
        print(f"report: failed benchmarks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
