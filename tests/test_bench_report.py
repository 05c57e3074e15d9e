"""bench/report.py renders REPORT.md and valid PNG plots from typed benchmark records.

A small synthetic result set stands in for a run: nothing is measured here, and no speed is asserted.
"""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import results
from bench.report import Meta, Results, main, render

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MACHINE = results.Machine(cores=2, cpu_model="Test CPU", memory_gb=4.0, python="3.11.7", platform="Linux-test")


def run_info(command: str) -> results.RunInfo:
    return results.RunInfo(command=command, started_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC), seconds=12.0,
                           machine=MACHINE, revision="abc1234")


def side(throughput: float, p50: float, p99: float) -> results.LoadSide:
    return results.LoadSide(submitted=100, completed=100, offered_actual_per_s=50.0, throughput_per_s=throughput,
                            latency=results.Percentiles(n=100, p50_ms=p50, p99_ms=p99))


def guest_side(sessions: int, kb: float, relay_p99: float) -> results.GuestSide:
    lat = results.GuestLatency(n=10, p50_ms=relay_p99 / 3, p99_ms=relay_p99, mean_ms=relay_p99 / 2)
    return results.GuestSide(sessions=sessions, start_all_s=1.0, rss_idle_mb=50.0, rss_open_mb=60.0,
                             kb_per_session=kb, cpu_pct=20, sent=10, confirmed=10, send_to_confirm=lat,
                             agent_relay=lat)


def latency(p50: float, p95: float) -> results.Latency95:
    return results.Latency95(n=20, p50_ms=p50, p95_ms=p95, max_ms=p95 * 1.5)


def budget(requests: int, http_429s: int = 0) -> results.BudgetUse:
    return results.BudgetUse(requests=requests, window_budget=80.0, share=requests / 80, http_429s=http_429s)


def new_benchmarks() -> dict[str, results.AnyRecord]:
    """A record of each benchmark added to the report with issue 10 point 4: orgs, lanes, sizing, adoption."""
    orgs = results.OrgsResult(
        run=run_info(".venv/bin/python bench/bench_orgs.py --seconds 10"), budget_per_minute=120, seconds=10,
        concurrency=4, org_a="default", org_b="northwind", org_a_offered=3, org_b_offered=0.5, modes=[
            results.OrgsMode(mode="parked", rate_wait_max_s="1.0", b_alone=latency(100, 200),
                             b_beside=latency(105, 210), budget_use={"default": budget(76), "northwind": budget(10)}),
            results.OrgsMode(mode="waiting", rate_wait_max_s="3600", b_alone=latency(100, 200),
                             b_beside=latency(4000, 8000),
                             budget_use={"default": budget(80, http_429s=3), "northwind": budget(8)})])
    lanes = results.LanesResult(
        run=run_info(".venv/bin/python bench/bench_lanes.py --seconds 10"), budget_per_minute=120, slot_ms=500,
        overload=3, high_every_s=2, seconds=10, concurrency=4, phases=[
            results.LanesPhase(phase="alone", high=latency(50, 100), budget_use=budget(5)),
            results.LanesPhase(phase="beside", high=latency(300, 600), budget_use=budget(79)),
            results.LanesPhase(phase="unlaned", high=latency(9000, 20000), budget_use=budget(80))])
    sizing = results.SizingResult(
        run=run_info(".venv/bin/python bench/bench_sizing.py --commands 20 --sessions 5"), redis_version="6.2.14",
        commands=20, sessions=5, celery_concurrency=4, rss_mb={"celery": [60.0, 55.0]}, cases=[
            results.SizingCase(name="cobrowse.start", units=20, unit="command", used_memory_per_unit=1000,
                               key_bytes_per_unit=800, cpu_ms_per_unit={"celery": 3.0, "redis": 0.5}, keys=[
                                   results.SizingKeys(pattern="parley:cmd:{id}", type="hash", keys_per_unit=1,
                                                      gone_per_unit=0, bytes_per_unit=600, ttl_s=86400)])])
    adoption = results.AdoptionResult(
        run=run_info(".venv/bin/python bench/bench_adoption.py --sessions 200 --with-commands 10"), sessions=200,
        connect_per_minute=900, connect_burst=50, start_all_s=4.0, adopted_all_s=12.0, budget_s=10.0, target_s=25.0,
        met=True, refused_upgrades=0, sends=results.AdoptionSends(
            sent=10, succeeded=10, failed=0, all_succeeded_s=3.5, genesys_received=10, genesys_received_twice=0,
            answers_relayed=10, answers_relayed_twice=0))
    return {"orgs": orgs, "lanes": lanes, "sizing": sizing, "adoption": adoption}


def synthetic() -> Results:
    cpu = results.CpuPerCommand(total_ms=9.0, by_process_ms={"redis": 1.0, "celery worker": 8.0})
    pipeline = results.PipelineResult(
        run=run_info(".venv/bin/python bench/bench_pipeline.py --commands 10 --json bench/data/pipeline.json"),
        commands_per_round=10, rounds=1, concurrency=8,
        latency_sweep=[results.LatencySweepPoint(genesys_latency_ms=ms, bare_per_s=[100.0], parley_per_s=[80.0],
                                                 bare_median_per_s=100.0, parley_median_per_s=80.0, ratio=0.8,
                                                 bare_cpu=cpu, parley_cpu=cpu) for ms in (0, 50)],
        one_at_a_time_bare=results.Percentiles(n=5, p50_ms=9.0, p99_ms=12.0),
        one_at_a_time_parley=results.Percentiles(n=5, p50_ms=13.0, p99_ms=17.0),
        load_genesys_latency_ms=50,
        load=[results.LoadPoint(offered_per_s=rate, seconds=2.0, bare=side(rate, 60, 80),
                                parley=side(min(rate, 90), 65, 90 if rate < 90 else 900)) for rate in (25, 50, 100)])
    guest = results.GuestResult(run=run_info(".venv/bin/python bench/bench_guest.py --sessions 10,100"), points=[
        results.GuestPoint(sessions=n, rate_per_s=50, seconds=2, isolation={"worker_cores": [1], "other_cores": [0]},
                           parley=guest_side(n, 40.0, 30.0), baseline=guest_side(n, 20.0, 5.0),
                           ratio={"memory_per_session": 2.0}) for n in (10, 100, 1000)])
    requests = results.RequestsResult(
        run=run_info(".venv/bin/python bench/bench_requests.py --commands 5"), counted_by="the emulator",
        concurrency=2, cases=[
            results.RequestCase(case="message.send first contact", command_type="message.send",
                                situation="a new customer", commands=5, requests=5, token_requests=0, per_command=1.0,
                                minimum=1, minimum_why="one POST",
                                by_route={"POST /api/v2/conversations/messages/agentless": 5}),
            results.RequestCase(case="conversation.end", command_type="conversation.end", situation="live",
                                commands=5, requests=15, token_requests=0, per_command=3.0, minimum=1,
                                minimum_why="one PATCH", by_route={"GET /api/v2/conversations/{conversationId}": 10,
                                                                   "PATCH /api/v2/conversations/messages/{id}": 5}),
            results.RequestCase(case="cobrowse.start again", command_type="cobrowse.start", situation="cached",
                                commands=5, requests=0, token_requests=0, per_command=0.0, minimum=0,
                                minimum_why="cached", by_route={}),
        ])
    ingest = results.IngestResult(run=run_info(".venv/bin/python bench/bench_ingest.py"), commands_per_round=10,
                                  rounds=1, concurrency=2, baseline_per_s=[1000.0], parley_per_s=[500.0],
                                  baseline_median_per_s=1000.0, parley_median_per_s=500.0, ratio=0.5)
    ratelimit = results.RateLimitResult(
        run=run_info(".venv/bin/python bench/bench_ratelimit.py --seconds 2"), limit_per_minute=600, processes=2,
        threads=2, seconds=2.0, overload=3.0, offered_scheduled=60.0, reached_acquire=40, admitted=20, budget=20.0,
        fixed_minutes=[20], would_be_429s=0, budget_share=1.0, admitted_times_s=[i / 10 for i in range(20)])
    return Results(requests=requests, pipeline=pipeline, guest=guest, ingest=ingest, ratelimit=ratelimit,
                   **new_benchmarks())


def assert_valid_png(path: Path) -> None:
    """The PNG signature, an IHDR of a non-empty image, and every chunk's CRC right up to IEND."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    offset, kinds = 8, []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind = data[offset + 4:offset + 8]
        body = data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path.name}: bad CRC in {kind!r}"
        kinds.append(kind)
        offset += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100


def test_renders_report_and_plots(tmp_path: Path) -> None:
    meta = Meta(command="make bench BENCH_QUICK=1", quick=True, generated_at=datetime(2026, 1, 2, tzinfo=UTC),
                machine=MACHINE)
    plots = render(synthetic(), tmp_path / "REPORT.md", tmp_path / "plots", meta)

    assert set(plots) == {"requests", "load_throughput", "load_latency", "genesys_latency", "guest_relay",
                          "guest_confirm", "guest_memory", "ratelimit"}
    for path in plots.values():
        assert path.parent == tmp_path / "plots"
        assert_valid_png(path)
    report = (tmp_path / "REPORT.md").read_text()
    assert "do not edit by hand" in report.lower()
    assert "`make bench BENCH_QUICK=1`" in report
    assert "2 cores, Test CPU, 4 GiB memory, Python 3.11.7" in report
    # The commands as a user would retype them: without where the report put the JSON.
    assert "`.venv/bin/python bench/bench_pipeline.py --commands 10`" in report
    assert "--json bench/data/pipeline.json" not in report
    # Every plot is linked, relative to the report.
    for path in plots.values():
        assert f"(plots/{path.name})" in report
    # The requests table: Parley's count beside the minimum, and the ratio.
    assert "| `conversation.end` | live | **3** | 1 | 3.00x | 100 |" in report
    assert "| `cobrowse.start` | cached | **0** | 0 | 0 = 0 | unbounded | none |" in report


def test_renders_a_section_for_each_new_benchmark_with_its_ratios(tmp_path: Path) -> None:
    render(synthetic(), tmp_path / "REPORT.md", tmp_path / "plots")
    report = (tmp_path / "REPORT.md").read_text()

    for title in ("## Two orgs", "## Priority lanes", "## Sizing", "## Guest adoption"):
        assert report.count(title) == 1, title
    for command in ("bench/bench_orgs.py --seconds 10", "bench/bench_lanes.py --seconds 10",
                    "bench/bench_sizing.py --commands 20 --sessions 5",
                    "bench/bench_adoption.py --sessions 200 --with-commands 10"):
        assert f"* `.venv/bin/python {command}`" in report  # in the header's list of commands run
        assert f"Command: `.venv/bin/python {command}`" in report  # and in its own section
    # Org B beside vs alone, p50 and p95, each with its ratio; each org's budget share and 429s.
    assert "| parked (wait max 1.0 s) | 100 | 105 | 1.05 | 200 | 210 | 1.05 | 95.0% (76 of 80) | 12.5% (10 of 80) " \
           "| 0 / 0 |" in report
    assert "| waiting (wait max 3600 s) | 100 | 4,000 | 40 | 200 | 8,000 | 40 | 100.0% (80 of 80) |" in report
    # High beside bulk vs alone, and the p95 wait beyond alone in budget slots (500 ms each).
    assert "| beside | 50 | 300 | 6 | 100 | 600 | 6 | 1 | 98.8% (79 of 80) | 0 |" in report
    assert "| unlaned | 50 | 9,000 | 180 | 100 | 20,000 | 200 | 39.8 |" in report
    # Bytes in keys beside used_memory (the cross-check), CPU per command, the largest keys.
    assert "| cobrowse.start | 20 | command | 800 | 1000 | 0.8 | 3.5 | celery 3, redis 0.5 | parley:cmd:{id} 600 B |" \
           in report
    # Adoption time beside what the connection budget allows, refused upgrades, sends lost or doubled.
    assert "| 200 | 12 | 10 | 1.2 | 25 | yes | 0 | 10/10 | 3.5 | 10/10 | 10/10 | 0 / 0 |" in report


def test_every_benchmark_in_bench_is_in_the_report() -> None:
    from bench.report import BENCHMARKS

    root = Path(__file__).resolve().parents[1]
    scripts = {p.relative_to(root).as_posix() for p in (root / "bench").glob("bench_*.py")}
    assert {b.script for b in BENCHMARKS} == scripts
    assert set(Results.__dataclass_fields__) == {b.name for b in BENCHMARKS}


def test_renders_what_there_is(tmp_path: Path) -> None:
    only = Results(requests=synthetic().requests)
    plots = render(only, tmp_path / "REPORT.md", tmp_path / "plots")
    assert list(plots) == ["requests"]
    report = (tmp_path / "REPORT.md").read_text()
    assert "## Genesys requests per command" in report
    assert "## Pipeline" not in report


def test_records_round_trip_through_json(tmp_path: Path) -> None:
    res = synthetic()
    for name in ("requests", "pipeline", "guest", "ingest", "ratelimit", *new_benchmarks()):
        record = getattr(res, name)
        results.write(tmp_path / f"{name}.json", record)
        assert results.read(tmp_path / f"{name}.json") == record
    assert Results.load(tmp_path).guest == res.guest


def test_a_phase_with_no_latency_reads_back_and_renders_as_n_a(tmp_path: Path) -> None:
    lanes = new_benchmarks()["lanes"]
    assert isinstance(lanes, results.LanesResult)
    nothing = results.Latency95(n=0, p50_ms=float("nan"), p95_ms=float("nan"), max_ms=float("nan"))
    lanes.phases[1] = lanes.phases[1].model_copy(update={"high": nothing})
    results.write(tmp_path / "data" / "lanes.json", lanes)

    loaded = Results.load(tmp_path / "data").lanes
    assert loaded is not None and loaded.phases[1].high.n == 0
    render(Results(lanes=loaded), tmp_path / "REPORT.md", tmp_path / "plots")
    assert "| beside | 50 | n/a | n/a | 100 | n/a | n/a | n/a |" in (tmp_path / "REPORT.md").read_text()


def test_without_json_flag() -> None:
    assert results.without_json_flag("python bench/x.py --a 1 --json out.json --b") == "python bench/x.py --a 1 --b"
    assert results.without_json_flag("python bench/x.py --json=out.json") == "python bench/x.py"


def test_render_only_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.report as report

    data = tmp_path / "data"
    results.write(data / "requests.json", synthetic().requests)
    monkeypatch.setattr(report, "DATA", data)
    monkeypatch.setattr(report, "REPORT", tmp_path / "REPORT.md")
    monkeypatch.setattr(report, "PLOTS", tmp_path / "plots")
    monkeypatch.setattr(report, "run_benchmarks", lambda *a: pytest.fail("--render-only ran a benchmark"))
    assert main(["--render-only"]) == 0
    assert (tmp_path / "REPORT.md").exists()
    assert_valid_png(tmp_path / "plots" / "requests_per_command.png")
