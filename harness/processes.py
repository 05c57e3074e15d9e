"""Real Parley processes on loopback (the ingestion worker, Celery workers) for tests, benchmarks and chaos."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def parley_env(redis_url: str, **overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PARLEY_REDIS_URL": redis_url,
        "PARLEY_CLAIM_IDLE_MS": "1500",
        "PARLEY_READ_BLOCK_MS": "200",
        "PARLEY_VISIBILITY_TIMEOUT_S": "60",
        "PARLEY_TASK_TIME_LIMIT_S": "20",
        "PARLEY_RETRY_MAX_DELAY_S": "10",
        "PARLEY_EXECUTION_LEASE_MS": "3000",
        "PARLEY_UNACKED_RESTORE_INTERVAL_S": "2",
        "PYTHONPATH": str(ROOT),
    })
    env.update(overrides)
    return env


def _output(log: Path | None) -> Any:
    """Where a child writes: a log file to inspect, or nowhere (an unread pipe could block it)."""
    return log.open("ab") if log is not None else subprocess.DEVNULL


def start_ingest(env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    out = _output(log)
    return subprocess.Popen([sys.executable, "-m", "parley.app.cli", "ingest"], env=env, cwd=ROOT,
                            stdout=out, stderr=out)


def start_celery(env: dict[str, str], app: str = "harness.celery_app", concurrency: int = 2,
                 name: str = "w1", log: Path | None = None, loglevel: str = "WARNING") -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", "parley.commands", "-c", str(concurrency),
            "-P", "prefork", "--loglevel", loglevel, "-n", f"{name}@%h", "--without-mingle", "--without-gossip"]
    out = _output(log)
    return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=out)


def stop(process: subprocess.Popen[bytes], *, kill: bool = False, timeout_s: float = 30) -> None:
    """SIGTERM (or SIGKILL) the process and wait for it; killed if it is not gone in ``timeout_s``."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running(*processes: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        for p in processes:
            stop(p, kill=True)
