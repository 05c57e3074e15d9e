"""One chaos run from start to verdict: start the cluster, open target conversations, inject faults,
drive the load, strike the kills, drain, read everything back, judge, and always clean up.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from chaos.cluster import Cluster, wait_for
from chaos.config import EMULATOR_ENV, ChaosConfig, parley_env
from chaos.driver import Driver, Submitted
from chaos.emulator import Emulator, Fixtures
from chaos.faults import FaultRunner, schedule
from chaos.follow import Follower
from chaos.load import LoadBuilder, Plan, Targets, targets_needed
from chaos.models import Findings
from chaos.observe import observe
from chaos.report import Result
from chaos.verdict import judge

QUIET_S = 2.0  # the ledger is settled once nothing new was recorded for this long


def open_targets(emulator: Emulator, fixtures: Fixtures, config: ChaosConfig) -> Targets:
    """Live web messaging conversations of the harness's own, for conversation.end and cobrowse commands."""
    rng = random.Random(f"targets-{config.seed}")
    ends, cobrowse = targets_needed(config.commands)
    deployment = fixtures.deployment("webmessaging")

    def open_one(i: int) -> str:
        contact = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return str(emulator.send_agentless(deployment, contact, f"chaos target {i}")["conversationId"])

    return Targets(end=[open_one(i) for i in range(ends)], cobrowse=[open_one(ends + i) for i in range(cobrowse)])


def _settle(emulator: Emulator) -> None:
    """Wait until the ledger stops growing (the simulated agent may still be answering)."""
    last = [emulator.last_seq(), time.monotonic()]

    def quiet() -> bool:
        seq = emulator.last_seq(known=int(last[0]))
        if seq != last[0]:
            last[:] = [seq, time.monotonic()]
        return time.monotonic() - last[1] >= QUIET_S

    wait_for(quiet, 60, "the emulator's ledger settling", every_s=0.5)


def run(config: ChaosConfig, log: bool = True) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="parley-chaos-"))
    cluster = Cluster(workdir, EMULATOR_ENV, config.celery_workers, config.celery_concurrency, config.guest_workers,
                      config.seed, config.rates.model_dump_json())
    elapsed: dict[str, float] = {}
    began = time.monotonic()
    follower: Follower | None = None
    runner: FaultRunner | None = None
    driver: Driver | None = None
    emulator: Emulator | None = None

    def say(text: str) -> None:
        if log:
            print(f"[{time.monotonic() - began:6.1f}s] {text}", flush=True)

    try:
        say(f"seed {config.seed}; working in {workdir}")
        cluster.start_infrastructure()
        emulator = Emulator(cluster.emulator_url)
        fixtures = emulator.fixtures()
        cluster.start_parley(parley_env(cluster.redis.url if cluster.redis else "", cluster.emulator_url,
                                        fixtures.client_id, fixtures.client_secret))
        targets = open_targets(emulator, fixtures, config)
        baseline = emulator.last_seq()
        plan: Plan = LoadBuilder(config.seed, fixtures, targets).build(
            config.commands, config.guests, config.duplicate_share, config.invalid_share, config.expired_share,
            config.guest_messages, config.customer_pool, config.non_utf8)
        elapsed["startup"] = time.monotonic() - began
        say(f"cluster up: {len(plan.commands)} commands, {len(plan.invalid)} invalid, {len(plan.guests)} guest "
            f"sessions planned")

        follower = Follower(cluster.redis_client)
        follower.start()
        emulator.mix(enabled=True)
        driver = Driver(cluster, follower, plan, config.window, say)
        planned = schedule(config.seed, config.celery_kills, config.guest_kills, config.redis_restarts,
                           [n for n, p in cluster.procs.items() if p.role == "celery"],
                           [n for n, p in cluster.procs.items() if p.role == "guest"])
        say("faults: " + ", ".join(f"{f.kind} {f.target} at {f.at_progress:.0%}" for f in planned))
        runner = FaultRunner(cluster, driver, planned, say)
        runner.start()
        load_began = time.monotonic()
        submitted: Submitted = driver.run()
        runner.finish()
        elapsed["load"] = time.monotonic() - load_began
        say(f"load submitted ({len(submitted.at)} commands); draining")

        drain_began = time.monotonic()
        keys = set(submitted.at)
        follower.wait(lambda: keys <= follower.ended, config.drain_timeout_s)
        injected = emulator.mix(enabled=False)
        _settle(emulator)
        elapsed["drain"] = time.monotonic() - drain_began
        say(f"drained ({len(keys & follower.ended)}/{len(keys)} ended); reading the ledger and the events back")

        check_began = time.monotonic()
        down = [p.name for p in cluster.procs.values() if not p.alive()]
        client = cluster.redis_client()
        try:
            observed = observe(client, emulator, baseline)
        finally:
            client.close()
        if config.keep_dir:  # for a post-mortem: everything the verdict read
            (workdir / "observed.json").write_text(observed.model_dump_json())
        found, recoveries, reasons = judge(plan, submitted, observed, runner.records, list(cluster.deaths), down,
                                           set(targets.end) | set(targets.cobrowse), config.recovery_limit_s)
        _notes(found, submitted, runner)
        elapsed["verdict"] = time.monotonic() - check_began
    finally:
        for part in (runner.abort if runner else None, follower.stop if follower else None,
                     driver.close if driver else None,
                     emulator.close if emulator else None):
            if part is not None:
                part()
        cluster.stop()
        leftovers = cluster.leftovers()
        if not config.keep_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed["total"] = time.monotonic() - began
    return Result(config=config, violations=found.violations, figures=found.figures, notes=found.notes,
                  reasons=dict(reasons), recoveries=recoveries, injected=dict(injected), elapsed=elapsed,
                  leftovers=leftovers)


def _notes(found: Findings, submitted: Submitted, runner: FaultRunner) -> None:
    if submitted.window_overruns:
        found.notes.append(f"the load went on {submitted.window_overruns} time(s) with the window still full")
    if submitted.retried_pipelines:
        found.notes.append(f"{submitted.retried_pipelines} submission(s) retried after a Redis error")
    for record in runner.records:
        found.notes.append(f"{record.kind} {record.target} at {record.at_progress:.0%}: {record.detail}")
