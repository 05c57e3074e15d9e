"""Flower tells the truth, behind a password: `parley run` with PARLEY_FLOWER_BASIC_AUTH, commands that
succeed, retry, fail for good and expire, read back through Flower's HTTP API (issue 12.1)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from parley.producer import Producer
from parley.settings import Settings
from tests.support.events import await_events
from tests.support.parley_run import ParleyRun, parley_run
from tests.support.pipeline import TERMINAL

pytestmark = pytest.mark.integration

USER, PASSWORD = "ops", "s3cret-flower-pw"
DEPLOYMENT = "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607"
SECRET_TEXT = "the customer's private words"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyRun]:
    with parley_run(tmp_path_factory.mktemp("flower"), PARLEY_FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}",
                    PARLEY_RETRY_BASE_S="0.2", PARLEY_RETRY_CAP_S="1") as running:
        yield running


@pytest.fixture(scope="module")
def flower(run: ParleyRun) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{run.flower_port}", auth=(USER, PASSWORD), timeout=5) as http:
        until(lambda: _up(http), "Flower never answered")
        yield http


def _up(http: httpx.Client) -> bool:
    try:
        return http.get("/healthcheck").status_code == 200
    except httpx.TransportError:
        return False


def until(condition: Callable[[], Any], failure: str, timeout_s: float = 60) -> Any:
    """Poll ``condition`` until it returns something truthy (Flower has no push API to await)."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, failure
        threading.Event().wait(0.2)
    return value


def submit(run: ParleyRun, command: dict[str, Any]) -> dict[str, Any]:
    client = redis.Redis(port=run.redis_port, decode_responses=True)
    try:
        Producer(client, Settings(redis_url=run.env["PARLEY_REDIS_URL"])).submit(command)
        events = await_events(client, lambda ev: any(
            e.get("idempotency_key") == command["idempotency_key"] and e["type"] in TERMINAL for e in ev))
    finally:
        client.close()
    return next(e for e in events if e.get("idempotency_key") == command["idempotency_key"] and e["type"] in TERMINAL)


def flower_task(flower: httpx.Client, task_id: str, state: str) -> dict[str, Any]:
    def info() -> dict[str, Any] | None:
        reply = flower.get(f"/api/task/info/{task_id}")
        return reply.json() if reply.status_code == 200 and reply.json().get("state") == state else None

    return until(info, f"Flower never showed task {task_id} as {state}")


def inject(run: ParleyRun, **fault: Any) -> None:
    httpx.post(f"http://127.0.0.1:{run.emulator_port}/__emulator/faults", json=fault).raise_for_status()


def send(**extra: Any) -> dict[str, Any]:
    return {"type": "message.send", "idempotency_key": f"fl-{uuid.uuid4().hex[:10]}", "channel": "webmessaging",
            "from_address": DEPLOYMENT, "external_contact_id": str(uuid.uuid4()), "text": SECRET_TEXT, **extra}


@pytest.mark.parametrize("path", ["/", "/tasks", "/api/tasks", "/api/workers", "/metrics"])
def test_every_page_api_and_metrics_need_the_password(run: ParleyRun, flower: httpx.Client, path: str) -> None:
    assert httpx.get(f"http://127.0.0.1:{run.flower_port}{path}").status_code == 401
    assert httpx.get(f"http://127.0.0.1:{run.flower_port}{path}", auth=(USER, "wrong")).status_code == 401
    assert flower.get(path).status_code == 200


def test_banner_says_flower_needs_the_password(run: ParleyRun) -> None:
    assert "basic auth" in run.banner and PASSWORD not in run.banner


def test_a_command_that_failed_for_good_is_a_failure_with_its_reason(run: ParleyRun, flower: httpx.Client) -> None:
    ended = submit(run, {"type": "cobrowse.start", "idempotency_key": f"fl-{uuid.uuid4().hex[:10]}",
                         "conversation_id": str(uuid.uuid4())})
    assert ended["type"] == "command.failed"
    task = flower_task(flower, ended["command_id"], "FAILURE")
    assert "404" in task["exception"] and ended["error"]["code"] in task["exception"]
    assert [t["uuid"] for t in flower.get("/api/tasks", params={"state": "FAILURE"}).json().values()
            if t["uuid"] == ended["command_id"]]


def test_a_refused_command_is_a_failure_too(run: ParleyRun, flower: httpx.Client) -> None:
    chat = submit(run, {"type": "chat.create", "idempotency_key": f"fl-{uuid.uuid4().hex[:10]}",
                        "queue_id": "5b7e1d9a-3c2f-4e81-9a6b-d4f08c2e7a13", "provider": "AcmeCRM"})
    refused = submit(run, send(conversation_id=chat["result"]["conversation_id"]))
    assert refused["type"] == "command.failed"
    task = flower_task(flower, refused["command_id"], "FAILURE")
    assert "third-party chat" in task["exception"] and SECRET_TEXT not in json.dumps(task)


def test_a_retried_command_shows_its_retries_then_success(run: ParleyRun, flower: httpx.Client) -> None:
    inject(run, method="POST", path="/api/v2/conversations/messages/agentless", status=503, times=1)
    done = submit(run, send())
    assert done["type"] == "command.succeeded"
    task = flower_task(flower, done["command_id"], "SUCCESS")
    assert task["retries"] >= 1 and SECRET_TEXT not in json.dumps(task)


def test_an_expired_command_is_revoked_as_expired(run: ParleyRun, flower: httpx.Client) -> None:
    expired = submit(run, send(expires_at="2001-01-01T00:00:00Z"))
    assert expired["type"] == "command.expired"
    task = flower_task(flower, expired["command_id"], "REVOKED")  # what Celery calls a task past its expiry
    assert task["name"] == "parley.message.send" and SECRET_TEXT not in json.dumps(task)
