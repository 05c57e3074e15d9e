"""The `parley` CLI against a real redis-server: submit, dead list, dead replay, schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
from typer.testing import CliRunner

from parley.app.cli import app
from parley.app.redis_server import free_port
from parley.deadletters import DeadLetters
from parley.settings import Settings, get_settings
from schemas.dead import DeadLetter
from tests.support.emulator_server import ROOT
from tests.test_schemas import VALID


@pytest.fixture
def cli(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("PARLEY_REDIS_URL", redis_url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_submit_validates_before_enqueueing(cli: CliRunner, redis_client: redis.Redis) -> None:
    ok = cli.invoke(app, ["submit", "-"], input=json.dumps(VALID["cobrowse.start"]))
    assert ok.exit_code == 0 and redis_client.xlen("parley:commands") == 1
    bad = cli.invoke(app, ["submit", "-"], input=json.dumps({**VALID["cobrowse.start"], "conversation_id": "x"}))
    assert bad.exit_code == 1 and "must be a Genesys id" in bad.output
    assert redis_client.xlen("parley:commands") == 1


def test_dead_list_and_replay(cli: CliRunner, redis_client: redis.Redis, redis_url: str) -> None:
    original = json.dumps(VALID["cobrowse.end"])
    DeadLetters(redis_client, Settings(redis_url=redis_url)).add(
        DeadLetter(stage="execute", reason="403 missing.permissions", original=original, command_type="cobrowse.end"))
    listed = cli.invoke(app, ["dead", "list"])
    assert listed.exit_code == 0 and "403 missing.permissions" in listed.output
    entry_id = listed.output.split()[0]
    replayed = cli.invoke(app, ["dead", "replay", entry_id])
    assert replayed.exit_code == 0, replayed.output
    assert redis_client.xlen("parley:dead") == 0
    [(_id, fields)] = redis_client.xrange("parley:commands")
    assert fields["command"] == original
    missing = cli.invoke(app, ["dead", "replay", entry_id])
    assert missing.exit_code == 1 and "no such dead letter" in missing.output


def test_schema_prints_every_command(cli: CliRunner) -> None:
    result = cli.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert "MessageSend" in json.loads(result.output)["command"]["$defs"]


@pytest.fixture
def cli_without_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    # set, then removed: monkeypatch then puts the variable back as it was, whatever the CLI sets
    monkeypatch.setenv("PARLEY_REDIS_URL", "redis://unused")
    monkeypatch.delenv("PARLEY_REDIS_URL")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_typed_commands_find_the_redis_parley_run_embeds(cli_without_url: CliRunner, redis_url: str,
                                                        redis_client: redis.Redis,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`make run` in one terminal, `parley submit` in another: no PARLEY_REDIS_URL needed."""
    monkeypatch.setenv("PARLEY_EMBEDDED_REDIS_PORT", redis_url.rsplit(":", 1)[1].split("/")[0])
    get_settings.cache_clear()
    ok = cli_without_url.invoke(app, ["submit", "-"], input=json.dumps(VALID["cobrowse.start"]))
    assert ok.exit_code == 0, ok.output
    assert redis_client.xlen("parley:commands") == 1
    # status, as its own process (its Celery app is built on import), probes Celery through the same
    # Redis: nothing consumes here, so it reports celery down rather than failing on localhost:6379
    env = {k: v for k, v in os.environ.items() if k != "PARLEY_REDIS_URL"} | {"PYTHONPATH": str(ROOT)}
    status = subprocess.run([sys.executable, "-m", "parley.app.cli", "status", "--timeout", "0.2"], env=env,
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert status.returncode == 1 and "DOWN  celery" in status.stdout, status.stdout + status.stderr


def test_no_redis_to_talk_to_is_a_clear_error(cli_without_url: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_EMBEDDED_REDIS_PORT", str(free_port()))
    get_settings.cache_clear()
    result = cli_without_url.invoke(app, ["dead", "list"])
    assert result.exit_code == 2
    assert "no Redis answers at redis://127.0.0.1:" in result.output and "start `parley run`" in result.output


@pytest.mark.parametrize("worker", ["ingest", "guest", "webhook"])
def test_a_worker_run_alone_without_redis_url_says_so(cli_without_url: CliRunner, worker: str) -> None:
    result = cli_without_url.invoke(app, [worker])
    assert result.exit_code == 2 and "PARLEY_REDIS_URL is not set" in result.output
