"""`parley run` as a user runs it: everything starts, `parley status` goes green, a command works,
Ctrl-C (SIGTERM) stops it all."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis

from harness.processes import ROOT
from tests.support.events import await_events
from tests.support.parley_run import parley_run

pytestmark = pytest.mark.integration


def flower_task_page(port: int, task_id: str, timeout_s: float = 30) -> str:
    """Flower's page for one task, once its events reached Flower (it has no push API to await)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        while True:
            response = http.get(f"/task/{task_id}")
            if response.status_code == 200 and "SUCCESS" in response.text:
                return response.text
            assert time.monotonic() < deadline, f"Flower never showed task {task_id}: {response.status_code}"
            threading.Event().wait(0.2)  # poll interval


def test_parley_run_starts_everything_and_status_goes_green(tmp_path: Path) -> None:
    with parley_run(tmp_path) as run:
        text = run.banner
        assert "Parley is running" in text and f"127.0.0.1:{run.emulator_port}" in text
        client_env, redis_port, flower_port = run.env, run.redis_port, run.flower_port
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline:
            status = subprocess.run([sys.executable, "-m", "parley.app.cli", "status", "--timeout", "5"],
                                    env=client_env, cwd=ROOT, capture_output=True, text=True)
            if status.returncode == 0:
                break
        assert status is not None and status.returncode == 0, status.stdout + status.stderr
        for component in ("ingest", "celery", "emulator", "flower"):
            lines = status.stdout.splitlines()
            assert any(line.startswith("up") and component in line for line in lines), status.stdout
        command = {"type": "message.send", "idempotency_key": "run-1", "channel": "webmessaging",
                   "from_address": "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607",
                   "external_contact_id": "2e6b9d14-7f3a-4c85-a1e0-5d8c3b7f9a26", "text": "hello from make run"}
        submitted = subprocess.run([sys.executable, "-m", "parley.app.cli", "submit", "-"], input=json.dumps(command),
                                   env=client_env, cwd=ROOT, capture_output=True, text=True)
        assert submitted.returncode == 0, submitted.stderr
        client = redis.Redis(port=redis_port, decode_responses=True)
        events = await_events(client, lambda ev: any(e["type"] == "command.succeeded" for e in ev), timeout_s=60)
        succeeded = next(e for e in events if e["type"] == "command.succeeded")
        assert succeeded["result"]["conversation_id"]
        client.close()
        page = flower_task_page(flower_port, succeeded["command_id"])
        assert "parley.message.send" in page and "run-1" in page  # name and reference shown...
        assert "hello from make run" not in page  # ...never the customer's text
