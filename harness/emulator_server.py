"""The Genesys Cloud emulator as a real server on loopback (``python -m emulator`` on a free port), for
tests, benchmarks and the chaos suite."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from emulator.fixtures import Fixtures
from harness.processes import ROOT
from parley.app.redis_server import free_port

ADMIN = "/__emulator"


@dataclass(frozen=True)
class EmulatorServer:
    base_url: str
    process: subprocess.Popen[bytes]

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, **kwargs)

    def fixtures(self) -> Fixtures:
        with self.client() as client:
            return Fixtures.model_validate(client.get(f"{ADMIN}/fixtures").json())


@contextmanager
def running_emulator(
    env: Mapping[str, str] | None = None, *, startup_timeout_s: float = 20.0
) -> Iterator[EmulatorServer]:
    """``python -m emulator`` on a free loopback port; ``env`` adds PARLEY_EMULATOR_* settings."""
    port = free_port()
    full_env = {
        **os.environ,
        "PARLEY_EMULATOR_HOST": "127.0.0.1",
        "PARLEY_EMULATOR_PORT": str(port),
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "emulator"],
            cwd=ROOT,
            env=full_env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        server = EmulatorServer(f"http://127.0.0.1:{port}", process)
        try:
            _wait_ready(server, output, startup_timeout_s)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(server: EmulatorServer, output: Any, timeout_s: float) -> None:
    """Poll the fixtures endpoint (the readiness probe) until it answers or the process dies."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.base_url, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                output.seek(0)
                raise RuntimeError(f"emulator exited with {server.process.returncode}:\n{output.read().decode()}")
            try:
                if client.get(f"{ADMIN}/fixtures").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"emulator not ready on {server.base_url} within {timeout_s}s")


FAST_AGENT_ENV = {"PARLEY_EMULATOR_AGENT_JOIN_DELAY_S": "0.05", "PARLEY_EMULATOR_AGENT_REPLY_DELAY_S": "0.05"}
"""A simulated agent that joins and answers within 50 ms, for socket tests."""
