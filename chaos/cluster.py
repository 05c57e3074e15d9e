"""The processes of a chaos run: start them, watch them, kill and restart them, and clean up.

Every child runs in a session of its own, so killing a Celery main process "as a container runtime
would" takes its pool children with it (``killpg``), and clean-up can prove nothing is left behind.
A watcher thread per process waits for its exit (no polling): an exit the harness did not cause is a
worker that died on its own, recorded for the verdict and restarted, as a supervisor would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from celery import Celery

from parley.app.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
STOP_TIMEOUT_S = 30.0
POLL_S = 0.05  # for conditions no event announces (a port answering, a log line, a pool refilled)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, *, every_s: float = POLL_S) -> None:
    """Poll ``condition`` until it holds; TimeoutError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    stop = threading.Event()  # waited on instead of sleeping; never set
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:g} s")
        stop.wait(every_s)


@dataclass(frozen=True)
class Death:
    """A process that exited without the harness killing it."""

    name: str
    at: float
    returncode: int
    log_tail: str


@dataclass
class Proc:
    name: str
    role: str  # emulator | ingest | celery | guest
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    expected_exit: bool = False  # set before the harness kills or stops it
    restarts: int = 0
    started_at: float = 0.0
    log_offset: int = 0  # where the current incarnation's output starts

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def output_since_start(self) -> str:
        try:
            with self.log.open("rb") as f:
                f.seek(self.log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""


@dataclass
class Cluster:
    workdir: Path
    emulator_env: dict[str, str]
    celery_workers: int
    celery_concurrency: int
    guest_workers: int
    seed: int
    fault_rates_json: str = "{}"
    redis: RedisServer | None = None
    procs: dict[str, Proc] = field(default_factory=dict)
    deaths: list[Death] = field(default_factory=list)
    emulator_url: str = ""
    parley_env: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _control: Celery | None = None

    # --- start -----------------------------------------------------------------------------------------
    def start_infrastructure(self) -> None:
        """redis-server (AOF) and the emulator (with the chaos fault mix, switched off until the load);
        Parley's workers come after the harness has read the emulator's fixtures."""
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(self.workdir / "redis").start()
        port = free_port()
        self.emulator_url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PARLEY_EMULATOR_FAULT_SEED": str(self.seed), **self.emulator_env}
        argv = [sys.executable, "-m", "chaos.emulator_server", "--port", str(port), "--seed", str(self.seed),
                "--rates", self.fault_rates_json]
        self._launch(Proc("emulator", "emulator", argv, env, self._log("emulator")))
        wait_for(self._emulator_answers, 30, "the emulator answering")

    def start_parley(self, parley_env: dict[str, str]) -> None:
        self.parley_env = {**os.environ, "PYTHONPATH": str(ROOT), **parley_env}
        for key in [k for k in self.parley_env if k.startswith("PARLEY_EMULATOR_")]:
            del self.parley_env[key]
        py = sys.executable
        ingest = [py, "-m", "parley.app.cli", "ingest"]
        self._launch(Proc("ingest", "ingest", ingest, self.parley_env, self._log("ingest")))
        for i in range(1, self.celery_workers + 1):
            # The product's worker command line (parley run), with a pool size and a node name of our own.
            argv = [py, "-m", "celery", "-A", "tasks.app", "worker", "-Q", "parley.commands", "-P", "prefork",
                    "-c", str(self.celery_concurrency), "-n", f"w{i}@%h", "--loglevel", "INFO"]
            self._launch(Proc(f"celery-w{i}", "celery", argv, self.parley_env, self._log(f"celery-w{i}")))
        for i in range(1, self.guest_workers + 1):
            self._launch(Proc(f"guest-{i}", "guest", [py, "-m", "parley.app.cli", "guest"], self.parley_env,
                              self._log(f"guest-{i}")))
        for proc in list(self.procs.values()):
            if proc.role != "emulator":
                self.wait_ready(proc.name)

    def _log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def _launch(self, proc: Proc) -> None:
        with self._lock:
            self.procs[proc.name] = proc
            proc.log_offset = proc.log.stat().st_size if proc.log.exists() else 0
            out = proc.log.open("ab")
            proc.process = subprocess.Popen(proc.argv, env=proc.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
            out.close()
            proc.expected_exit = False
            proc.started_at = time.time()
            process = proc.process
        threading.Thread(target=self._watch, args=(proc, process), name=f"watch-{proc.name}", daemon=True).start()

    # --- readiness -------------------------------------------------------------------------------------
    def _emulator_answers(self) -> bool:
        try:
            return httpx.get(f"{self.emulator_url}/__emulator/fixtures", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def node(self, name: str) -> str:
        """The Celery node name of ``celery-wN``."""
        return f"{name.removeprefix('celery-')}@{socket.gethostname()}"

    def control(self) -> Celery:
        """A bare Celery app on the same broker, for remote control (ping, inspect); no tasks of its own."""
        if self._control is None:
            assert self.redis is not None
            self._control = Celery("chaos-control", broker=self.redis.url)
        return self._control

    def wait_ready(self, name: str, timeout_s: float = 60.0) -> None:
        proc = self.procs[name]
        if proc.role == "celery":
            node = self.node(name)

            def ready() -> bool:
                self._check_alive(proc)
                with contextlib.suppress(Exception):  # the broker may be restarting
                    return bool(self.control().control.ping(destination=[node], timeout=0.5))
                return False
        elif proc.role == "guest":
            def ready() -> bool:
                self._check_alive(proc)
                return " up" in proc.output_since_start() and "guest worker" in proc.output_since_start()
        elif proc.role == "ingest":
            def ready() -> bool:
                self._check_alive(proc)
                return "ingesting" in proc.output_since_start()
        else:
            ready = self._emulator_answers
        wait_for(ready, timeout_s, f"{name} ready")

    @staticmethod
    def _check_alive(proc: Proc) -> None:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited while starting:\n{proc.tail()}")

    # --- watching --------------------------------------------------------------------------------------
    def _watch(self, proc: Proc, process: subprocess.Popen[bytes]) -> None:
        returncode = process.wait()
        with self._lock:
            if self._stopping.is_set() or proc.expected_exit or proc.process is not process:
                return
            self.deaths.append(Death(proc.name, time.time(), returncode, proc.tail(40)))
        # A supervisor restarts it; a second's pause keeps a crash loop from spinning.
        if self._stopping.wait(1.0):
            return
        self.restart(proc.name)

    # --- faults ----------------------------------------------------------------------------------------
    def kill(self, name: str, *, whole_group: bool = True) -> None:
        """SIGKILL a process (and, by default, everything in its session: a Celery worker's pool)."""
        proc = self.procs[name]
        with self._lock:
            proc.expected_exit = True
            process = proc.process
        assert process is not None
        with contextlib.suppress(ProcessLookupError):
            if whole_group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        process.wait()

    def restart(self, name: str) -> None:
        proc = self.procs[name]
        with self._lock:
            if self._stopping.is_set():
                return
            proc.restarts += 1
        self._launch(proc)

    def pool_children(self, name: str) -> list[int]:
        """PIDs of a Celery worker's pool processes (the main process's children)."""
        proc = self.procs[name]
        children: list[int] = []
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{proc.pid}/task").iterdir():
                children += [int(c) for c in (task / "children").read_text().split()]
        return children

    def restart_redis(self) -> None:
        """SIGTERM (AOF flushed), then start again on the same port and data directory."""
        assert self.redis is not None
        self.redis.restart()

    def redis_client(self) -> redis.Redis:
        assert self.redis is not None
        return redis.Redis.from_url(self.redis.url, decode_responses=True, socket_connect_timeout=2,
                                    socket_timeout=10)

    # --- clean-up --------------------------------------------------------------------------------------
    def stop(self) -> list[str]:
        """Stop everything (SIGTERM, then SIGKILL of whole sessions); return what had to be force-killed."""
        self._stopping.set()
        forced: list[str] = []
        procs = list(self.procs.values())
        for proc in procs:
            proc.expected_exit = True
            if proc.alive():
                assert proc.process is not None
                with contextlib.suppress(ProcessLookupError):
                    proc.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in procs:
            if proc.process is None:
                continue
            try:
                proc.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                forced.append(proc.name)
            # Pool children or anything else left in the session go too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.process.wait(timeout=10)
        if self._control is not None:
            with contextlib.suppress(Exception):
                self._control.close()
        if self.redis is not None:
            self.redis.stop(kill=True)
        return forced

    def leftovers(self) -> list[str]:
        """Processes still alive in any session this cluster started (``ps`` of their process groups)."""
        groups = {str(p.process.pid) for p in self.procs.values() if p.process is not None}
        if self.redis is not None and self.redis.process is not None and self.redis.process.poll() is None:
            groups.add(f"redis:{self.redis.process.pid}")
        out = subprocess.run(["ps", "-eo", "pid=,pgid=,args="], capture_output=True, text=True, check=False).stdout
        left = [line.strip() for line in out.splitlines() if line.split()[1:2] and line.split()[1] in groups]
        return left + sorted(g for g in groups if g.startswith("redis:"))
