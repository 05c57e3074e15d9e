"""`parley run` as a user starts it, on free ports, for tests that need the whole product."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness.processes import ROOT
from parley.app.redis_server import free_port


@dataclass
class ParleyRun:
    process: subprocess.Popen[str]
    banner: str
    env: dict[str, str]
    """The environment a CLI command run beside it needs (PARLEY_REDIS_URL points at its Redis)."""
    redis_port: int
    emulator_port: int
    flower_port: int
    output: list[str] = field(default_factory=list)
    """Every line `parley run` and its children wrote (stdout and stderr), the banner's included; read
    all along, so that no child ever blocks on a full pipe."""


@contextmanager
def parley_run(tmp_path: Path, **settings: str) -> Iterator[ParleyRun]:
    """Start `parley run`, wait for its banner (printed once everything was started), SIGTERM it after.

    The stop is checked: `parley run` must exit 0 on SIGTERM.
    """
    redis_port, emulator_port, flower_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update({"PARLEY_DATA_DIR": str(tmp_path), "PARLEY_EMBEDDED_REDIS_PORT": str(redis_port),
                "PARLEY_EMULATOR_PORT": str(emulator_port), "PARLEY_FLOWER_PORT": str(flower_port),
                "PARLEY_METRICS_PORT": str(free_port()),  # /metrics; tests read it from ParleyRun.env
                "PARLEY_CELERY_CONCURRENCY": "1", "PYTHONPATH": str(ROOT), **settings})
    process = subprocess.Popen([sys.executable, "-m", "parley.app.cli", "run"], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reader: threading.Thread | None = None
    try:
        banner = []
        assert process.stdout is not None
        for line in process.stdout:
            banner.append(line)
            if "parley status" in line:
                break
        client_env = dict(env, PARLEY_REDIS_URL=settings.get("PARLEY_REDIS_URL",
                                                             f"redis://127.0.0.1:{redis_port}/0"))
        run = ParleyRun(process, "".join(banner), client_env, redis_port, emulator_port, flower_port, list(banner))
        reader = threading.Thread(target=run.output.extend, args=(process.stdout,), daemon=True)
        reader.start()
        yield run
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        finally:
            if reader is not None:
                reader.join(timeout=10)  # the children may hold the pipe a moment longer
    assert process.returncode == 0
