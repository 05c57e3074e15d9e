"""parley/metrics.py: what is exported (names, help, label sets), labels that carry no customer data, the
sum of several processes (multiprocess mode, as `parley run` and a prefork Celery worker use it), the gauges
read from Redis when scraped, and the /metrics endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from pydantic import ValidationError
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.processes import ROOT
from parley import metrics
from parley.app.redis_server import free_port
from parley.outcomes import Endings
from parley.records import CommandRecord, State
from parley.settings import Settings
from schemas.events import CommandResult

EXPECTED_LABELS = {
    "parley_commands": ("type", "outcome"),
    "parley_retries": ("type", "reason"),
    "parley_dead_letters_written": ("stage",),
    "parley_genesys_requests": ("operation", "status"),
    "parley_genesys_request_seconds": ("operation",),
    "parley_genesys_rate_limit_wait_seconds": ("org", "client"),
    "parley_genesys_rate_limit_slots": ("org", "client"),
    "parley_genesys_rate_limit_per_minute": ("org", "client"),
    "parley_genesys_rate_limit_pauses": ("org", "client"),
    "parley_guest_sessions_open": (),
    "parley_guest_reconnects": ("protocol",),
    "parley_guest_socket_failures": ("reason",),
    "parley_guest_adoptions": (),
    "parley_guest_relay_seconds": (),
    "parley_webhook_deliveries": ("outcome",),
    "parley_webhook_relay_seconds": (),
}


def value(name: str, labels: dict[str, str] | None = None, registry: object = None) -> float:
    """A sample's value now (0 if absent)."""
    served = registry if registry is not None else metrics.REGISTRY
    for sample_name, sample_labels, sample_value in metrics.samples(served):  # type: ignore[arg-type]
        if sample_name == name and sample_labels == (labels or {}):
            return sample_value
    return 0.0


def test_every_metric_is_parleys_documented_and_has_its_label_set() -> None:
    collectors = {c._name: c for c in metrics.REGISTRY._collector_to_names}  # type: ignore[attr-defined]
    assert set(collectors) == set(EXPECTED_LABELS)
    for name, collector in collectors.items():
        assert name.startswith("parley_")
        assert len(collector._documentation) > 20, name
        assert collector._labelnames == EXPECTED_LABELS[name], name


def test_no_label_can_name_a_customer_or_a_conversation() -> None:
    sensitive = {"customer", "contact", "conversation", "conversation_id", "address", "text", "token", "key",
                 "idempotency_key", "session_key", "command_id", "member"}
    for labels in EXPECTED_LABELS.values():
        assert not sensitive & set(labels)


def test_a_command_type_a_producer_made_up_is_unknown_in_a_label() -> None:
    before = value("parley_commands_total", {"type": "unknown", "outcome": "rejected"})
    metrics.command("Dear Jane, your card 4111 is blocked", "rejected")
    metrics.command(None, "rejected")
    assert value("parley_commands_total", {"type": "unknown", "outcome": "rejected"}) == before + 2
    assert metrics.command_type("message.send") == "message.send"


@pytest.mark.parametrize(("path", "route"), [
    ("/api/v2/conversations/6f1c2a9e-3b7d-4c55-9a0e-2f4b8d1e7c30/cobrowse", "/api/v2/conversations/{id}/cobrowse"),
    ("/api/v2/conversations/messages/agentless", "/api/v2/conversations/messages/agentless"),
    ("/api/v2/webchat/guest/conversations/ab%2F12/members/3f2c-1a/messages",
     "/api/v2/webchat/guest/conversations/{id}/members/{id}/messages"),
    ("/api/v2/conversations/messages/6f1c2a9e/messages/bulk", "/api/v2/conversations/messages/{id}/messages/bulk"),
    ("/oauth/token", "/oauth/token"),
])
def test_a_genesys_route_keeps_its_words_and_loses_its_ids(path: str, route: str) -> None:
    assert metrics.route("POST", path) == f"POST {route}"


def test_a_genesys_request_counts_by_route_and_status_and_times_it() -> None:
    labels = {"operation": "GET /api/v2/conversations/{id}", "status": "404"}
    before = value("parley_genesys_requests_total", labels)
    metrics.genesys_request("GET /api/v2/conversations/{id}", 404, 0.03)
    assert value("parley_genesys_requests_total", labels) == before + 1
    assert value("parley_genesys_request_seconds_bucket",
                 {"operation": "GET /api/v2/conversations/{id}", "le": "0.05"}) >= 1


def record(type_: str = "cobrowse.start") -> CommandRecord:
    return CommandRecord(command_id="c1", type=type_, idempotency_key="k1", org="default", state=State.running,
                         body='{"type": "cobrowse.start"}', accepted_at="2026-01-01T00:00:00+00:00")


def test_each_ending_is_counted_where_it_is_written_and_a_failure_is_a_dead_letter() -> None:
    endings = Endings(Settings())
    succeeded = {"type": "cobrowse.start", "outcome": "succeeded"}
    failed = {"type": "cobrowse.start", "outcome": "failed"}
    dead = {"stage": "execute"}
    before = [value("parley_commands_total", succeeded), value("parley_commands_total", failed),
              value("parley_dead_letters_written_total", dead)]
    endings.succeeded(record(), CommandResult())
    endings.failed(record(), "404 not.found")
    assert [value("parley_commands_total", succeeded), value("parley_commands_total", failed),
            value("parley_dead_letters_written_total", dead)] == [b + 1 for b in before]


# --- several processes ------------------------------------------------------------------------------
WRITER = """
import os, sys
from parley import metrics
metrics.command("message.send", "succeeded")
metrics.genesys_request("POST /api/v2/conversations/messages/agentless", 200, 0.02)
metrics.guest_sessions.set(int(sys.argv[1]))
print(os.getpid())
"""


def write_from_a_process(directory: Path, sessions: int) -> int:
    env = {**os.environ, metrics.MULTIPROC_ENV: str(directory), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", WRITER, str(sessions)], env=env, cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=60)
    return int(done.stdout)


def test_two_processes_writing_to_one_directory_add_up_and_a_dead_ones_gauge_goes(tmp_path: Path) -> None:
    metrics.prepare_directory(str(tmp_path / "m"))
    first = write_from_a_process(tmp_path / "m", 3)
    write_from_a_process(tmp_path / "m", 4)
    served = metrics.registry(Settings(), multiprocess_dir=str(tmp_path / "m"))
    assert value("parley_commands_total", {"type": "message.send", "outcome": "succeeded"}, served) == 2
    ok = {"operation": "POST /api/v2/conversations/messages/agentless", "status": "200"}
    assert value("parley_genesys_requests_total", ok, served) == 2
    assert value("parley_genesys_request_seconds_count", {"operation": ok["operation"]}, served) == 2
    assert value("parley_guest_sessions_open", {}, served) == 7  # livesum: the live processes' sessions
    metrics.process_exited(first, str(tmp_path / "m"))
    assert value("parley_guest_sessions_open", {}, served) == 4
    assert value("parley_commands_total", {"type": "message.send", "outcome": "succeeded"}, served) == 2


def test_the_directory_is_emptied_before_a_run(tmp_path: Path) -> None:
    write_from_a_process(tmp_path, 1)
    metrics.prepare_directory(str(tmp_path))
    assert list(tmp_path.iterdir()) == []
    served = metrics.registry(Settings(), multiprocess_dir=str(tmp_path))
    assert value("parley_commands_total", {"type": "message.send", "outcome": "succeeded"}, served) == 0


def test_a_child_writes_to_the_directory_and_serves_nothing_itself() -> None:
    assert metrics.child_environment("/x") == {metrics.MULTIPROC_ENV: "/x", "PARLEY_METRICS_PORT": "0"}
    assert Settings(metrics_port="0").metrics_port == 0  # type: ignore[arg-type]


# --- Redis, read when scraped ------------------------------------------------------------------------
@pytest.fixture
def client(redis_server: object) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_server.url, decode_responses=True)  # type: ignore[attr-defined]
    connection.flushdb()
    yield connection
    connection.close()


def test_stream_backlog_queue_depth_and_dead_letters_are_read_from_redis(client: redis.Redis) -> None:
    settings = Settings()
    for n in range(5):
        client.xadd(settings.commands_stream, {"command": str(n)})
    client.xgroup_create(settings.commands_stream, settings.consumer_group, id="0")
    client.xreadgroup(settings.consumer_group, "c1", {settings.commands_stream: ">"}, count=2)
    client.rpush("parley.commands", "a", "b")
    client.rpush("parley.commands\x06\x163", "c")  # kombu's list for priority 3
    client.xadd(settings.dead_stream, {"dead": "{}"})
    served = metrics.registry(settings, redis_client=client)
    group = {"stream": settings.commands_stream, "group": settings.consumer_group}
    assert value("parley_stream_pending", group, served) == 2
    assert value("parley_stream_lag", group, served) == 3
    assert value("parley_celery_queue_depth", {"queue": "parley.commands"}, served) == 3
    assert value("parley_dead_letters", {}, served) == 1
    assert value("parley_redis_up", {}, served) == 1


def test_a_scrape_while_redis_is_away_says_so_instead_of_failing() -> None:
    away = redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    served = metrics.registry(Settings(), redis_client=away)
    assert value("parley_redis_up", {}, served) == 0
    assert value("parley_celery_queue_depth", {"queue": "parley.commands"}, served) == 0


# --- serving ------------------------------------------------------------------------------------------
def test_metrics_are_served_over_http_and_a_taken_port_is_a_warning_not_a_crash() -> None:
    exporter = metrics.serve("127.0.0.1", free_port(), metrics.REGISTRY)
    assert exporter is not None
    try:
        metrics.command("chat.create", "accepted")
        page = httpx.get(exporter.url, timeout=5)
        assert page.status_code == 200
        assert 'parley_commands_total{outcome="accepted",type="chat.create"}' in page.text
        assert "# HELP parley_genesys_requests_total" in page.text
        port = int(exporter.url.rsplit(":", 1)[1].split("/")[0])
        assert metrics.serve("127.0.0.1", port, metrics.REGISTRY) is None
    finally:
        exporter.close()


def test_a_worker_alone_serves_only_when_its_port_is_set() -> None:
    assert metrics.serve_worker(Settings()) is None
    assert metrics.serve_worker(Settings(metrics_port=0)) is None
    exporter = metrics.serve_worker(Settings(metrics_port=free_port()))
    assert exporter is not None
    try:
        assert httpx.get(exporter.url, timeout=5).status_code == 200
    finally:
        exporter.close()


def test_metrics_port_settings() -> None:
    assert Settings(metrics_port="").metrics_port is None  # type: ignore[arg-type]  # compose's ${VAR:-}
    with pytest.raises(ValidationError):
        Settings(metrics_port=70000)
    with pytest.raises(ValidationError):
        Settings(metrics_port="nine")  # type: ignore[arg-type]


def test_parley_run_serves_on_9464_unless_told_and_port_0_writes_and_serves_nothing(tmp_path: Path) -> None:
    assert metrics.serve_children(Settings(data_dir=str(tmp_path), metrics_port=0), redis.Redis()) is None
    assert not (tmp_path / "metrics").exists()
    taken = metrics.serve("127.0.0.1", free_port(), metrics.REGISTRY)
    assert taken is not None
    port = int(taken.url.rsplit(":", 1)[1].split("/")[0])
    try:
        aggregate = metrics.serve_children(Settings(data_dir=str(tmp_path), metrics_port=port), redis.Redis())
        assert aggregate is not None and aggregate.exporter is None  # the children still write; nothing serves
        assert aggregate.banner().startswith("not served") and (tmp_path / "metrics").is_dir()
    finally:
        taken.close()
    assert metrics.DEFAULT_RUN_PORT == 9464 and Settings().metrics_port is None
