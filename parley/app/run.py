"""`parley run`: the whole product on one machine, on embedded defaults.

Starts (unless already configured elsewhere) an embedded Redis with AOF, the Genesys Cloud
emulator, the ingestion worker, a Celery worker and Flower; restarts a child that dies; stops all
of them on Ctrl-C or SIGTERM (Celery gets SIGTERM: a warm shutdown that requeues held tasks).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from parley import keys, metrics
from parley.app.redis_server import RedisServer, embedded
from parley.connections import configured, connect, describe
from parley.settings import Settings

RESTART_BACKOFF_S = (1, 2, 5, 10, 30)
log = logging.getLogger("parley.app.run")


@dataclass
class Child:
    name: str
    argv: list[str]
    health_url: str | None = None
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    reports_metrics: bool = True
    """Writes Parley's metrics (Flower and the emulator do not: theirs are not Parley's)."""

    def start(self, env: dict[str, str]) -> None:
        if not self.reports_metrics:
            env = {name: value for name, value in env.items() if name != metrics.MULTIPROC_ENV}
        self.process = subprocess.Popen(self.argv, env=env)
        self.started_at = time.monotonic()


@dataclass
class Supervisor:
    settings: Settings
    children: list[Child] = field(default_factory=list)
    redis: RedisServer | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    metrics_sum: metrics.Aggregate | None = None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.redis is not None:
            env["PARLEY_REDIS_URL"] = self.redis.url
        if self.metrics_sum is not None:
            env.update(metrics.child_environment(self.metrics_sum.directory))
        return env

    def plan(self) -> list[Child]:
        s = self.settings
        py = sys.executable
        children = []
        if s.uses_emulator:
            children.append(Child("emulator", [py, "-m", "parley.app.cli", "emulator"],
                                  f"http://{s.emulator_host}:{s.emulator_port}/__emulator/fixtures",
                                  reports_metrics=False))
        if s.webhook_url:
            children.append(Child("webhook-relay", [py, "-m", "parley.app.cli", "webhook"]))
        children += [
            Child("ingest-worker", [py, "-m", "parley.app.cli", "ingest"]),
            Child("guest-worker", [py, "-m", "parley.app.cli", "guest"]),
            # --quiet: no banner on stdout; the worker's lines (its start included) are JSON logs like the rest.
            Child("celery-worker", [py, "-m", "celery", "-A", "tasks.app", "--quiet", "worker", "-E",
                                    "-Q", keys.CELERY_QUEUE, "-c", str(s.celery_concurrency), "--loglevel", "INFO",
                                    "-n", "parley@%h"]),
            Child("flower", [py, "-m", "parley.app.cli", "flower", f"--port={s.flower_port}",
                             "--address=127.0.0.1", "--purge_offline_workers=60"],
                  f"http://127.0.0.1:{s.flower_port}/healthcheck", reports_metrics=False),
        ]
        return children

    def start(self) -> None:
        if not configured(self.settings):
            self.redis = embedded(self.settings).start()
            print(f"embedded Redis (AOF) at {self.redis.url}, data in {self.redis.data_dir}")
        redis_settings = Settings(redis_url=self.redis.url) if self.redis is not None else self.settings
        self.metrics_sum = metrics.serve_children(self.settings, connect(redis_settings))
        env = self._env()
        client = connect(redis_settings)
        self.children = self.plan()
        client.delete(keys.COMPONENTS_HASH)
        client.hset(keys.COMPONENTS_HASH, "guest-worker", json.dumps({"heartbeat": "guest"}))
        for child in self.children:
            if child.health_url:
                client.hset(keys.COMPONENTS_HASH, child.name, json.dumps({"health_url": child.health_url}))
            child.start(env)
        client.close()
        self._banner(describe(redis_settings))  # never the password

    def _banner(self, redis_url: str) -> None:
        s = self.settings
        lines = [
            "", "Parley is running.",
            f"  Redis:            {redis_url}",
            f"  submit commands:  parley submit FILE   (or XADD {s.commands_stream} * command <json>)",
            f"  follow events:    parley events        ({s.events_stream})",
            f"  dead letters:     parley dead list     ({s.dead_stream})",
            f"  Flower:           http://127.0.0.1:{s.flower_port}  ({_flower_access(s)})",
        ]
        if self.metrics_sum is not None:
            lines.append(f"  metrics:          {self.metrics_sum.banner()}")
        if s.uses_emulator:
            url = f"http://{s.emulator_host}:{s.emulator_port}"
            lines.append(f"  Genesys emulator: {url}  (fixtures: {url}/__emulator/fixtures)")
        else:
            lines.append(f"  Genesys Cloud:    {s.genesys_api_url or s.genesys_region}")
        lines.append("  health:           parley status\n")
        print("\n".join(lines), flush=True)

    def watch(self) -> None:
        env = self._env()
        while not self.stop_event.wait(1.0):
            for child in self.children:
                if child.process is not None and child.process.poll() is not None:
                    if self.metrics_sum is not None:
                        metrics.process_exited(child.process.pid, self.metrics_sum.directory)
                    delay = RESTART_BACKOFF_S[min(child.restarts, len(RESTART_BACKOFF_S) - 1)]
                    log.warning("%s exited with %s; restarting in %s s", child.name, child.process.returncode, delay)
                    if self.stop_event.wait(delay):
                        return
                    child.restarts += 1
                    child.start(env)

    def stop(self) -> None:
        self.stop_event.set()
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        for child in self.children:
            if child.process is not None:
                try:
                    child.process.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    child.process.kill()
        if self.metrics_sum is not None:
            self.metrics_sum.close()
        if self.redis is not None:
            self.redis.stop()


def run(settings: Settings) -> None:
    supervisor = Supervisor(settings)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: supervisor.stop_event.set())
    supervisor.start()
    try:
        supervisor.watch()
    finally:
        supervisor.stop()


def _flower_access(settings: Settings) -> str:
    if settings.flower_basic_auth is not None:
        return "basic auth: PARLEY_FLOWER_BASIC_AUTH"
    return "no password, loopback only; set PARLEY_FLOWER_BASIC_AUTH=user:password to require one"
