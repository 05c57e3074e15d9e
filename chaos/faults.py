"""The kill / restart schedule, drawn from the seed, and carrying it out while the load runs.

Faults fire at points of the REST load's progress (not wall time, which depends on the machine), one
at a time, in their own thread so the load goes on meanwhile:

* ``celery_child``: SIGKILL of a pool process that is executing a task (asked of the worker itself
  with ``inspect active``); the fault lasts until the pool has replaced it.
* ``celery_main``: SIGKILL of a worker's main process and its pool (its whole process group, as a
  container runtime kills a container); the harness restarts it like a supervisor; the fault lasts
  until the new worker answers a ping.
* ``guest``: SIGKILL of a guest worker, restarted likewise; until it is up again.
* ``redis``: redis-server stopped (SIGTERM: the AOF is flushed) and started on the same port and AOF;
  until it answers.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from typing import Literal

import redis
from pydantic import BaseModel, ConfigDict

from chaos.cluster import Cluster, wait_for
from chaos.driver import Driver

FaultKind = Literal["celery_child", "celery_main", "guest", "redis"]
FIRST, LAST = 0.10, 0.85  # faults strike between these fractions of the REST load


class PlannedFault(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    target: str  # process name (celery-w1, guest-2) or "redis"
    at_progress: float


class FaultRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    target: str
    at_progress: float
    started_at: float = 0.0  # wall clock, seconds
    ended_at: float = 0.0
    detail: str = ""
    error: str | None = None


def schedule(seed: int, celery_kills: int, guest_kills: int, redis_restarts: int,
             celery_workers: list[str], guest_workers: list[str]) -> list[PlannedFault]:
    """Spread the faults over the load: one per equal slice of [FIRST, LAST], at a random point of it.
    Celery kills alternate between pool children and main processes (children first)."""
    rng = random.Random(f"faults-{seed}")
    kinds: list[FaultKind] = [("celery_child" if i % 2 == 0 else "celery_main") for i in range(celery_kills)]
    kinds += ["guest"] * guest_kills + ["redis"] * redis_restarts
    rng.shuffle(kinds)
    n = len(kinds)
    out: list[PlannedFault] = []
    for i, kind in enumerate(kinds):
        low = FIRST + (LAST - FIRST) * i / n
        high = FIRST + (LAST - FIRST) * (i + 1) / n
        if kind in ("celery_child", "celery_main"):
            target = rng.choice(celery_workers)
        elif kind == "guest":
            target = rng.choice(guest_workers)
        else:
            target = "redis"
        out.append(PlannedFault(kind=kind, target=target, at_progress=round(rng.uniform(low, high), 4)))
    return out


class FaultRunner:
    def __init__(self, cluster: Cluster, driver: Driver, planned: list[PlannedFault],
                 say: Callable[[str], None] | None = None) -> None:
        self.cluster = cluster
        self.say = say
        self.driver = driver
        self.planned = planned
        self.records: list[FaultRecord] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self, timeout_s: float = 300.0) -> None:
        """Wait for the faults still to come (the load has ended, so they fire at once)."""
        self._thread.join(timeout_s)
        self._stop.set()

    def abort(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        for fault in self.planned:
            if not self.driver.wait_progress(fault.at_progress, self._stop):
                return
            record = FaultRecord(kind=fault.kind, target=fault.target, at_progress=fault.at_progress)
            try:
                getattr(self, f"_{fault.kind}")(record)
            except Exception as exc:  # reported with the verdict; the run goes on
                record.error = f"{type(exc).__name__}: {exc}"
                record.ended_at = record.ended_at or time.time()
            self.records.append(record)
            if self.say:
                self.say(f"fault {record.kind} {record.target}: {record.error or record.detail} "
                         f"({record.ended_at - record.started_at:.1f} s)")

    # --- the faults ------------------------------------------------------------------------------------
    def _celery_child(self, record: FaultRecord) -> None:
        node = self.cluster.node(record.target)
        children = set(self.cluster.pool_children(record.target))
        victim: tuple[int, str] | None = None
        deadline = time.monotonic() + 20
        while victim is None and time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # the broker may be busy: ask again
                active = self.cluster.control().control.inspect(destination=[node], timeout=1.0).active() or {}
                busy = [(t["worker_pid"], t["id"]) for t in active.get(node, []) if t.get("worker_pid") in children]
                if busy:
                    victim = busy[0]
        if victim is None:  # nothing running on that worker: kill a child anyway, and say so
            victim = (sorted(children)[0], "")
        pid, task_id = victim
        record.started_at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        concurrency = self.cluster.celery_concurrency
        wait_for(lambda: pid not in self.cluster.pool_children(record.target)
                 and len(self.cluster.pool_children(record.target)) >= concurrency, 60, "the pool replacing a child")
        record.ended_at = time.time()
        record.detail = f"pid {pid} (pool of {record.target})" + (
            f" mid-task {task_id}" if task_id else " (no task was running on that worker)")

    def _celery_main(self, record: FaultRecord) -> None:
        pool = self.cluster.pool_children(record.target)
        record.started_at = time.time()
        self.cluster.kill(record.target, whole_group=True)
        self.cluster.restart(record.target)
        self.cluster.wait_ready(record.target)
        record.ended_at = time.time()
        record.detail = f"main pid and pool {pool} of {record.target}; restarted"

    def _guest(self, record: FaultRecord) -> None:
        record.started_at = time.time()
        self.cluster.kill(record.target, whole_group=True)
        self.cluster.restart(record.target)
        self.cluster.wait_ready(record.target)
        record.ended_at = time.time()
        record.detail = f"{record.target} SIGKILLed; restarted"

    def _redis(self, record: FaultRecord) -> None:
        with self.driver.pause:  # no submission is in doubt across the restart
            record.started_at = time.time()
            self.cluster.restart_redis()
            client = self.cluster.redis_client()
            try:
                wait_for(lambda: _pings(client), 60, "Redis answering after its restart")
            finally:
                client.close()
            record.ended_at = time.time()
        record.detail = "SIGTERM (AOF flushed), same port, same AOF"


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
        return False
