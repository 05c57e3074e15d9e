"""`parley run` as a user starts it, on free ports, for tests that need the whole product."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from parley.redis_server import free_port
from tests.support.processes import ROOT


@dataclass
class ParleyRun:
    process: subprocess.Popen[str]
    banner: str
    env: dict[str, str]
    """The environment a CLI command run beside it needs (PARLEY_REDIS_URL points at its Redis)."""
    redis_port: int
    emulator_port: int
    flower_port: int


@contextmanager
def parley_run(tmp_path: Path, **settings: str) -> Iterator[ParleyRun]:
    """Start `parley run`, wait for its banner (printed once everything was started), SIGTERM it after.

    The stop is checked: `parley run` must exit 0 on SIGTERM.
    """
    redis_port, emulator_port, flower_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update({"PARLEY_DATA_DIR": str(tmp_path), "PARLEY_EMBEDDED_REDIS_PORT": str(redis_port),
                "PARLEY_EMULATOR_PORT": str(emulator_port), "PARLEY_FLOWER_PORT": str(flower_port),
                "PARLEY_CELERY_CONCURRENCY": "1", "PYTHONPATH": str(ROOT), **settings})
    process = subprocess.Popen([sys.executable, "-m", "parley.cli", "run"], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = []
        assert process.stdout is not None
        for line in process.stdout:
            banner.append(line)
            if "parley status" in line:
                break
        client_env = dict(env, PARLEY_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0")
        yield ParleyRun(process, "".join(banner), client_env, redis_port, emulator_port, flower_port)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0
