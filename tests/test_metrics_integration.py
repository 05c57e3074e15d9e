"""A real `parley run` serves /metrics (issue 12.2): its banner names the URL, and the figures of every process
(ingest, the Celery worker's prefork child, the guest worker) and of Redis move with the traffic, by exactly
what was sent; no label names a customer, a conversation or a message's text."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from harness.emulator_server import running_emulator
from harness.processes import running, start_celery, start_ingest
from parley import metrics
from parley.app.redis_server import RedisServer, free_port
from parley.producer import Producer
from parley.settings import Settings
from tests.support.events import await_events
from tests.support.parley_run import ParleyRun, parley_run
from tests.support.pipeline import TERMINAL, pipeline_env

pytestmark = pytest.mark.integration

DEPLOYMENT = "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607"  # the emulator's seeded Messenger deployment
GUEST_CHAT_DEPLOYMENT = "9f2d7b4c-1a6e-4c38-b5d9-e08f3a2c6b71"
SECRET_TEXT = "Dear Ada, your parcel 77-KX is at the back door"
AGENTLESS = "POST /api/v2/conversations/messages/agentless"
CHATS = "POST /api/v2/conversations/chats"
Figures = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyRun]:
    with parley_run(tmp_path_factory.mktemp("metrics"), PARLEY_RETRY_BASE_S="0.2", PARLEY_RETRY_CAP_S="1") as running:
        yield running


@pytest.fixture(scope="module")
def client(run: ParleyRun) -> Iterator[redis.Redis]:
    connection = redis.Redis(port=run.redis_port, decode_responses=True)
    yield connection
    connection.close()


def url(run: ParleyRun) -> str:
    return f"http://127.0.0.1:{run.env['PARLEY_METRICS_PORT']}/metrics"


def scrape_text(run: ParleyRun) -> str:
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.get(url(run), timeout=10).raise_for_status().text
        except httpx.TransportError:
            assert time.monotonic() < deadline, "/metrics never answered"
            time.sleep(0.2)  # the exporter starts with `parley run`; nothing to await but its answer


def scrape(run: ParleyRun) -> Figures:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(scrape_text(run)) for sample in family.samples}


def figure(figures: Figures, name: str, **labels: str) -> float:
    return figures.get((name, frozenset(labels.items())), 0.0)


def total(figures: Figures, name: str, **labels: str) -> float:
    """The sum over every other label."""
    return sum(v for (n, ls), v in figures.items() if n == name and set(labels.items()) <= ls)


def submit(run: ParleyRun, client: redis.Redis, command: dict[str, Any], ending: tuple[str, ...] = TERMINAL,
           ) -> dict[str, Any]:
    Producer(client, Settings(redis_url=run.env["PARLEY_REDIS_URL"])).submit(command)
    return await_ending(client, command["idempotency_key"], ending)


def await_ending(client: redis.Redis, key: str, ending: tuple[str, ...]) -> dict[str, Any]:
    def mine(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in events if e.get("idempotency_key") == key and e["type"] in ending]

    return mine(await_events(client, lambda events: bool(mine(events))))[-1]


def send() -> dict[str, Any]:
    return {"type": "message.send", "idempotency_key": f"m-{uuid.uuid4().hex[:10]}", "channel": "webmessaging",
            "from_address": DEPLOYMENT, "external_contact_id": str(uuid.uuid4()), "text": SECRET_TEXT}


def test_the_banner_names_the_metrics_url(run: ParleyRun) -> None:
    assert f"metrics:          {url(run)}" in run.banner


def test_the_figures_move_with_the_traffic_and_no_label_names_a_customer(run: ParleyRun, client: redis.Redis) -> None:
    before = scrape(run)
    assert figure(before, "parley_redis_up") == 1
    sends = [send(), send()]
    succeeded = [submit(run, client, command) for command in sends]
    assert [e["type"] for e in succeeded] == ["command.succeeded"] * 2
    duplicate = submit(run, client, sends[0], ("command.duplicate",))
    failed = submit(run, client, {"type": "cobrowse.start", "idempotency_key": f"c-{uuid.uuid4().hex[:10]}",
                                  "conversation_id": str(uuid.uuid4())})
    assert failed["type"] == "command.failed"  # 404: no such conversation
    invalid_key = f"bad-{uuid.uuid4().hex[:10]}"
    client.xadd("parley:commands", {"command": f'{{"type": "message.send", "idempotency_key": "{invalid_key}", '
                                               f'"channel": "webmessaging", "text": "{SECRET_TEXT}"}}'})
    rejected = await_ending(client, invalid_key, ("command.rejected",))
    httpx.post(f"http://127.0.0.1:{run.emulator_port}/__emulator/faults",
               json={"method": "POST", "path": "/api/v2/conversations/chats", "status": 429, "retry_after_s": 0,
                     "times": 1}).raise_for_status()
    chat = submit(run, client, {"type": "chat.create", "idempotency_key": f"ch-{uuid.uuid4().hex[:10]}",
                                "queue_id": "5b7e1d9a-3c2f-4e81-9a6b-d4f08c2e7a13", "provider": "AcmeCRM"})
    assert chat["type"] == "command.succeeded"
    session = f"s-{uuid.uuid4().hex[:10]}"
    organization = httpx.get(f"http://127.0.0.1:{run.emulator_port}/__emulator/fixtures").json()["organization_id"]
    guest = submit(run, client, {"type": "guest.start", "idempotency_key": f"g-{uuid.uuid4().hex[:10]}",
                                 "session_key": session, "protocol": "guestchat",
                                 "deployment_id": GUEST_CHAT_DEPLOYMENT, "organization_id": organization,
                                 "queue_name": "Support", "display_name": "Ada", "first_message": SECRET_TEXT})
    assert guest["type"] == "command.succeeded"
    await_events(client, lambda events: any(e.get("session_key") == session and e["type"] == "guest.message"
                                            for e in events))

    expected = {
        ("parley_commands_total", (("type", "message.send"), ("outcome", "accepted"))): 2,
        ("parley_commands_total", (("type", "message.send"), ("outcome", "succeeded"))): 2,
        ("parley_commands_total", (("type", "message.send"), ("outcome", "duplicate"))): 1,
        ("parley_commands_total", (("type", "message.send"), ("outcome", "rejected"))): 1,
        ("parley_commands_total", (("type", "cobrowse.start"), ("outcome", "accepted"))): 1,
        ("parley_commands_total", (("type", "cobrowse.start"), ("outcome", "failed"))): 1,
        ("parley_commands_total", (("type", "chat.create"), ("outcome", "succeeded"))): 1,
        ("parley_commands_total", (("type", "guest.start"), ("outcome", "succeeded"))): 1,
        ("parley_retries_total", (("type", "chat.create"), ("reason", "rate_limited"))): 1,
        ("parley_dead_letters_written_total", (("stage", "ingest"),)): 1,
        ("parley_dead_letters_written_total", (("stage", "execute"),)): 1,
        ("parley_dead_letters", ()): 2,
        ("parley_genesys_requests_total", (("operation", AGENTLESS), ("status", "200"))): 2,
        ("parley_genesys_request_seconds_count", (("operation", AGENTLESS),)): 2,
        ("parley_genesys_requests_total", (("operation", "POST /api/v2/conversations/{id}/cobrowse"),
                                           ("status", "404"))): 1,
        ("parley_genesys_requests_total", (("operation", CHATS), ("status", "429"))): 1,
        ("parley_genesys_requests_total", (("operation", CHATS), ("status", "200"))): 1,
        ("parley_genesys_rate_limit_pauses_total", None): 1,
        ("parley_guest_sessions_open", ()): 1,
    }

    def moved(now: Figures) -> dict[str, tuple[float, float]]:
        """Each figure that has not yet moved by what was sent: (moved by, expected)."""
        off = {}
        for (name, labels), delta in expected.items():
            got = (total(now, name) - total(before, name) if labels is None else
                   figure(now, name, **dict(labels)) - figure(before, name, **dict(labels)))
            if got != delta:
                off[f"{name}{dict(labels or ())}"] = (got, delta)
        return off

    deadline = time.monotonic() + 20
    while (off := moved(now := scrape(run))) and time.monotonic() < deadline:
        time.sleep(0.2)  # the figures are in once each process wrote them: nothing to await but the scrape
    assert not off, off

    # Every request that took a slot of the shared budget is a Genesys request with the OAuth token.
    oauth = [(name, labels) for (name, labels) in now if name == "parley_genesys_requests_total"
             and not re.search("/webchat/guest/|/oauth/", dict(labels)["operation"])]
    slots, waits = "parley_genesys_rate_limit_slots_total", "parley_genesys_rate_limit_wait_seconds_count"
    assert total(now, slots) - total(before, slots) == sum(now[k] - before.get(k, 0) for k in oauth) >= 5
    assert total(now, waits) == total(now, slots)
    assert total(now, "parley_guest_relay_seconds_count") > total(before, "parley_guest_relay_seconds_count")
    assert figure(now, "parley_genesys_rate_limit_per_minute", org="default", client=_client(now)) == 300
    assert ("parley_stream_pending", frozenset({("stream", "parley:commands"), ("group", "parley-ingest")})) in now
    assert ("parley_stream_lag", frozenset({("stream", "parley:commands"), ("group", "parley-ingest")})) in now
    assert ("parley_celery_queue_depth", frozenset({("queue", "parley.commands")})) in now

    # No label value names a customer, a conversation, a key or a message's text.
    secrets = {SECRET_TEXT, DEPLOYMENT, GUEST_CHAT_DEPLOYMENT, organization, session, invalid_key,
               *(c["external_contact_id"] for c in sends), *(c["idempotency_key"] for c in sends),
               *(e["result"]["conversation_id"] for e in succeeded), chat["result"]["conversation_id"],
               failed["command_id"], rejected["command_id"], duplicate["command_id"]}
    label_values = {value for (_name, labels) in now for _label, value in labels}
    assert not {v for v in label_values for s in secrets if s and (s in v or (v in s and len(v) > 8))}
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", scrape_text(run))  # no UUID anywhere on the page


def _client(figures: Figures) -> str:
    return next(dict(labels)["client"] for name, labels in figures if name == "parley_genesys_rate_limit_per_minute")


# --- the compose shape: each worker run alone serves its own /metrics ----------------------------------
def test_workers_run_alone_serve_their_own_and_the_celery_worker_its_childrens_sum(tmp_path: Path) -> None:
    ingest_port, celery_port = free_port(), free_port()
    with RedisServer(tmp_path / "redis") as server, running_emulator() as emulator:
        env = pipeline_env(server.url, emulator, PARLEY_METRICS_HOST="127.0.0.1")
        ingest = start_ingest({**env, "PARLEY_METRICS_PORT": str(ingest_port)})
        celery = start_celery({**env, "PARLEY_METRICS_PORT": str(celery_port),
                               metrics.MULTIPROC_ENV: str(tmp_path / "celery-metrics")},
                              app="tasks.app", concurrency=2)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        with running(ingest, celery):
            sends = [send(), send()]
            for command in sends:
                Producer(client, Settings(redis_url=server.url)).submit(command)
            for command in sends:
                assert await_ending(client, command["idempotency_key"], TERMINAL)["type"] == "command.succeeded"
            at_ingest, at_celery = (_wait_for(f"http://127.0.0.1:{port}/metrics", lambda f: any(
                n == "parley_commands_total" for n, _ in f)) for port in (ingest_port, celery_port))
        client.close()
    assert figure(at_ingest, "parley_commands_total", type="message.send", outcome="accepted") == 2
    assert figure(at_ingest, "parley_redis_up") == 1  # ingest adds the Redis gauges
    assert figure(at_celery, "parley_commands_total", type="message.send", outcome="succeeded") == 2
    assert figure(at_celery, "parley_genesys_requests_total", operation=AGENTLESS, status="200") == 2
    assert ("parley_redis_up", frozenset()) not in at_celery


def _wait_for(address: str, ready: Callable[[Figures], bool]) -> Figures:
    deadline = time.monotonic() + 30
    while True:
        try:
            figures = {(s.name, frozenset(s.labels.items())): s.value for family in
                       text_string_to_metric_families(httpx.get(address, timeout=10).text) for s in family.samples}
            if ready(figures):
                return figures
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{address} never answered with figures"
        time.sleep(0.2)  # a worker's exporter starts with it; nothing to await but its answer
