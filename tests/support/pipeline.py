"""The whole product for integration tests: emulator, redis-server, `parley ingest`, Celery workers.

Started once per test module (processes are slow to start); tests stay independent by using fresh
customers and idempotency keys rather than flushing Redis, which would also remove kombu's bindings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from harness.emulator_server import EmulatorServer, running_emulator
from harness.processes import ROOT, parley_env, start_celery, start_ingest, stop
from parley.app.redis_server import RedisServer
from parley.producer import Producer
from parley.settings import Settings
from tests.support.events import await_events

TERMINAL = {"command.succeeded", "command.failed", "command.expired"}


@dataclass
class Pipeline:
    redis_server: RedisServer
    emulator: EmulatorServer
    env: dict[str, str]
    client: redis.Redis
    http: httpx.Client
    log_dir: Path = Path(".")
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def logs(self) -> str:
        """Everything the ingestion and Celery workers logged."""
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    def genesys_token(self) -> str:
        f = self.fixtures
        reply = self.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                               auth=(f["client_id"], f["client_secret"]))
        return str(reply.json()["access_token"])

    @property
    def fixtures(self) -> dict[str, Any]:
        return self.http.get("/__emulator/fixtures").json()

    def submit(self, command: dict[str, Any]) -> str:
        return Producer(self.client, Settings(redis_url=self.redis_server.url)).submit(command)

    def outcome(self, key: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait for the terminal event of the command with idempotency key ``key``."""
        events = await_events(self.client, lambda ev: any(
            e.get("idempotency_key") == key and e["type"] in TERMINAL for e in ev), timeout_s)
        return next(e for e in events if e.get("idempotency_key") == key and e["type"] in TERMINAL)

    def run(self, command: dict[str, Any], timeout_s: float = 60.0) -> dict[str, Any]:
        self.submit(command)
        return self.outcome(command["idempotency_key"], timeout_s)

    def events_for(self, key: str) -> list[dict[str, Any]]:
        return [json.loads(f["event"]) for _id, f in self.client.xrange("parley:events")
                if json.loads(f["event"]).get("idempotency_key") == key]

    def ledger(self, kind: str, conversation_id: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, str] = {"kind": kind}
        if conversation_id:
            params["conversation_id"] = conversation_id
        return self.http.get("/__emulator/ledger", params=params).json()["entries"]

    def fault(self, **spec: Any) -> None:
        self.http.post("/__emulator/faults", json=spec).raise_for_status()

    def clear_faults(self) -> None:
        self.http.delete("/__emulator/faults").raise_for_status()

    def start(self, name: str, process: subprocess.Popen[bytes]) -> None:
        self.processes[name] = process

    def stop_all(self) -> None:
        for p in self.processes.values():
            stop(p, kill=True)


def key(prefix: str = "k") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def pipeline_env(redis_url: str, emulator: EmulatorServer, **overrides: str) -> dict[str, str]:
    """The environment of the pipeline's processes: Redis at ``redis_url``, Genesys the emulator."""
    fixtures = httpx.get(f"{emulator.base_url}/__emulator/fixtures").json()
    env = parley_env(redis_url, **{
        "PARLEY_GENESYS_API_URL": emulator.base_url,
        "PARLEY_GENESYS_CLIENT_ID": fixtures["client_id"],
        "PARLEY_GENESYS_CLIENT_SECRET": fixtures["client_secret"],
        "PARLEY_RETRY_BASE_S": "0.2",
        "PARLEY_RETRY_CAP_S": "1",
        "PARLEY_NATURAL_KEY_LEASE_MS": "3000",
        "PARLEY_END_VERIFY_DEADLINE_S": "5",
        "PARLEY_STALL_REDISPATCH_S": "20",
        "PARLEY_STATE_MAX_AGE_S": "0",  # confirm every cached entry: exercises the refresh path
        "PARLEY_GENESYS_ANALYTICS_LAG_S": "3",  # the emulator's analytics lists conversations 2 s late
        **overrides,
    })
    env.pop("PARLEY_GENESYS_REGION", None)
    return env


@contextmanager
def running_pipeline(tmp: Path, *, celery_concurrency: int = 2, guest_workers: int = 0,
                     **env_overrides: str) -> Iterator[Pipeline]:
    with ExitStack() as stack:
        server = stack.enter_context(RedisServer(tmp / "redis"))
        emulator = stack.enter_context(running_emulator())
        env = pipeline_env(server.url, emulator, **env_overrides)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        http = stack.enter_context(httpx.Client(base_url=emulator.base_url))
        log_dir = tmp / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        pipeline = Pipeline(server, emulator, env, client, http, log_dir)
        stack.callback(pipeline.stop_all)
        pipeline.start("ingest", start_ingest(env, log=log_dir / "ingest.log"))
        pipeline.start("celery", start_celery(env, app="tasks.app", concurrency=celery_concurrency,
                                              log=log_dir / "celery.log", loglevel="INFO"))
        for n in range(guest_workers):
            log = stack.enter_context((log_dir / f"guest-{n}.log").open("ab"))
            pipeline.start(f"guest-{n}", subprocess.Popen([sys.executable, "-m", "parley.app.cli", "guest"], env=env,
                                                          cwd=ROOT, stdout=log, stderr=log))
        yield pipeline


def environ_without_parley() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}


def module_pipeline(name: str, *, celery_concurrency: int = 3, guest_workers: int = 0) -> tuple[Any, Any]:
    """A test module's ``pipeline`` fixture (one real pipeline for the module) and its autouse
    ``no_faults`` (every test starts and ends with the emulator's faults cleared). Assign both:
    ``pipeline, no_faults = module_pipeline("name")``."""
    import pytest

    @pytest.fixture(scope="module")
    def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
        with running_pipeline(Path(tmp_path_factory.mktemp(name)), celery_concurrency=celery_concurrency,
                              guest_workers=guest_workers) as p:
            yield p

    @pytest.fixture(autouse=True)
    def no_faults(pipeline: Pipeline) -> Iterator[None]:
        pipeline.clear_faults()
        yield
        pipeline.clear_faults()

    return pipeline, no_faults
