"""compose.yaml validates against the Compose specification (../shared/contracts/compose-spec.json) and
holds what production needs: a Redis with a password, AOF everysec and noeviction; a health check that
proves consumption on every Parley service; the emulator only on request; Flower behind a password;
restarts and stop grace periods; a non-root image that carries the otel extra, so traces are one variable away."""

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.contract import CONTRACTS_DIR

ROOT = Path(__file__).resolve().parents[1]
WORKERS = {"ingest": "ingest", "celery-worker": "celery", "guest-worker": "guest", "webhook-relay": "webhook"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_file_validates_against_the_spec(compose: dict[str, Any]) -> None:
    spec = json.loads((CONTRACTS_DIR / "compose-spec.json").read_text())
    jsonschema.validate(compose, spec)
    assert {"redis", "emulator", "ingest", "celery-worker", "guest-worker", "flower"} <= set(compose["services"])


def test_redis_has_a_password_aof_everysec_and_noeviction(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command
    assert "requirepass $$PARLEY_REDIS_PASSWORD" in command  # from the environment, not the file
    assert "${PARLEY_REDIS_PASSWORD:?" in redis["environment"]["PARLEY_REDIS_PASSWORD"]
    url = compose["services"]["ingest"]["environment"]["PARLEY_REDIS_URL"]
    assert url.startswith("redis://:${PARLEY_REDIS_PASSWORD:?")


@pytest.mark.parametrize(("service", "component"), sorted(WORKERS.items()))
def test_each_worker_is_checked_by_consumption(compose: dict[str, Any], service: str, component: str) -> None:
    spec = compose["services"][service]
    assert spec["healthcheck"]["test"] == ["CMD", "parley", "health", component]
    assert spec["restart"] == "unless-stopped" and spec["stop_grace_period"]


@pytest.mark.parametrize("service", sorted(WORKERS))
def test_each_worker_serves_its_metrics_on_the_compose_network(compose: dict[str, Any], service: str) -> None:
    env = compose["services"][service]["environment"]
    assert env["PARLEY_METRICS_PORT"] == "9464" and env["PARLEY_METRICS_HOST"] == "0.0.0.0"


def test_the_celery_workers_children_add_up_their_metrics(compose: dict[str, Any]) -> None:
    assert compose["services"]["celery-worker"]["environment"]["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")


def test_celery_workers_are_named_as_parley_health_pings_them(compose: dict[str, Any]) -> None:
    command = compose["services"]["celery-worker"]["command"]
    assert command[command.index("-n") + 1] == "parley@%h"


def test_emulator_only_on_request_and_flower_behind_a_password(compose: dict[str, Any]) -> None:
    assert compose["services"]["emulator"]["profiles"] == ["emulator"]
    flower = compose["services"]["flower"]
    assert flower["command"][:2] == ["parley", "flower"]
    assert "${PARLEY_FLOWER_BASIC_AUTH:?" in flower["environment"]["PARLEY_FLOWER_BASIC_AUTH"]
    assert "healthcheck" in flower and "healthcheck" in compose["services"]["redis"]


def test_image_runs_as_an_unprivileged_user() -> None:
    users = [line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")


def _extras_the_image_installs_parley_with() -> set[str]:
    """The extras of the project (``.``) in the Dockerfile's ``pip install`` commands."""
    extras: set[str] = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not line.startswith("RUN "):
            continue
        words = shlex.split(line.removeprefix("RUN "))
        for start in (i + 1 for i, word in enumerate(words[:-1]) if word == "pip" and words[i + 1] == "install"):
            for word in words[start + 1:]:
                if word in ("&&", ";", "||"):
                    break
                if project := re.fullmatch(r"\.(?:\[([^\]]*)\])?", word):
                    extras |= {extra.strip() for extra in (project[1] or "").split(",") if extra.strip()}
    return extras


def test_image_installs_the_otel_extra_that_pyproject_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "otel" in declared  # the extra parley/tracing.py needs
    assert "otel" in _extras_the_image_installs_parley_with()


@pytest.mark.parametrize("service", [*sorted(WORKERS), "flower", "emulator"])
def test_traces_are_off_by_default_and_one_variable_away(compose: dict[str, Any], service: str) -> None:
    env = compose["services"][service]["environment"]
    assert env["PARLEY_OTEL_ENABLED"] == "${PARLEY_OTEL_ENABLED:-false}"
    # Never an empty endpoint: an empty value would not fall back to the SDK's default on every SDK version.
    assert re.fullmatch(r"\$\{OTEL_EXPORTER_OTLP_ENDPOINT:-http://[^}]+\}", env["OTEL_EXPORTER_OTLP_ENDPOINT"])
