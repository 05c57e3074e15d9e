"""Prometheus metrics: every metric Parley exports, and how a process serves them.

Call sites make one call where the thing happens once (``metrics.commands.labels(type=..., outcome=...)
.inc()``); this module owns the names (``parley_...``), the help texts, the label sets and the serving.

Labels never carry customer data: only command types (any other text becomes ``unknown``), outcomes,
reason codes, operation names, HTTP statuses, stages, stream and queue names, org aliases, and the short
hash that names an OAuth client in Redis. No ids, addresses, text or tokens.

Processes. A worker run alone (``parley ingest|guest|webhook``) serves its own ``/metrics`` when
``PARLEY_METRICS_PORT`` is set. Processes that fork or run side by side write to one directory instead
(prometheus_client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``), and one process serves the sum:
``parley run`` for all its children, the Celery main process for its prefork children. Gauges that
describe Redis (stream backlog, Celery queue depth, dead letters) are read from Redis when scraped
(:class:`RedisCollector`), by the one serving process that asks for them, not kept per process.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIServer

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from parley import keys
from parley.settings import Settings
from schemas.commands import COMMAND_MODELS

log = logging.getLogger("parley.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_RUN_PORT = 9464
"""Where `parley run` serves /metrics unless PARLEY_METRICS_PORT says otherwise (the exporters' port)."""

REGISTRY = CollectorRegistry()
"""Parley's metrics only (Flower and libraries register on prometheus_client's default registry)."""

if os.environ.get(MULTIPROC_ENV):
    # Values are files in this directory, opened as metrics are touched: it must exist by then.
    os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)
WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
RELAY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
WEBHOOK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# --- commands --------------------------------------------------------------------------------------
commands = Counter(
    "parley_commands", "Commands by type and outcome: accepted, duplicate and rejected at ingest; succeeded, "
    "failed and expired when they end.", ["type", "outcome"], registry=REGISTRY)
retries = Counter(
    "parley_retries", "Executions put off for later, by command type and reason: the retry policy's kinds "
    "(conflict, rate_limited, server_error, request_timeout, timeout, connection) and waits that use no "
    "attempt (lease_busy, lease_wait, not_yet, rate_budget, redis_unavailable).", ["type", "reason"], registry=REGISTRY)
dead_letters = Counter(
    "parley_dead_letters_written", "Dead letters written, by stage (ingest, execute, webhook).", ["stage"],
    registry=REGISTRY)

# --- Genesys ---------------------------------------------------------------------------------------
genesys_requests = Counter(
    "parley_genesys_requests", "Genesys HTTP requests by operation and answer (HTTP status, or timeout / "
    "connection_error).", ["operation", "status"], registry=REGISTRY)
genesys_latency = Histogram(
    "parley_genesys_request_seconds", "Genesys HTTP request latency by operation (answered or not).",
    ["operation"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
rate_limit_wait = Histogram(
    "parley_genesys_rate_limit_wait_seconds", "Time a request waited for a slot of its OAuth client's shared "
    "budget (including a 429's pause), by org and client.", ["org", "client"], buckets=WAIT_BUCKETS, registry=REGISTRY)
rate_limit_slots = Counter(
    "parley_genesys_rate_limit_slots", "Slots of the OAuth client's budget taken (requests admitted), by org "
    "and client; over a minute, against parley_genesys_rate_limit_per_minute, the budget used.", ["org", "client"],
    registry=REGISTRY)
rate_limit_per_minute = Gauge(
    "parley_genesys_rate_limit_per_minute", "The OAuth client's budget (requests per minute), by org and client.",
    ["org", "client"], multiprocess_mode="max", registry=REGISTRY)
rate_limit_pauses = Counter(
    "parley_genesys_rate_limit_pauses", "429 answers that paused every process using the OAuth client.",
    ["org", "client"], registry=REGISTRY)

# --- guest worker ----------------------------------------------------------------------------------
guest_sessions = Gauge(
    "parley_guest_sessions_open", "Guest sessions held (a runner each) by the guest workers.",
    multiprocess_mode="livesum", registry=REGISTRY)
guest_reconnects = Counter(
    "parley_guest_reconnects", "Guest websockets opened again within a session's runner, by protocol.",
    ["protocol"], registry=REGISTRY)
guest_socket_failures = Counter(
    "parley_guest_socket_failures", "Guest websockets the worker failed itself, by reason (keepalive_timeout: a "
    "ping unanswered; invalid_text: a text message that is not UTF-8).", ["reason"], registry=REGISTRY)
guest_adoptions = Counter(
    "parley_guest_adoptions", "Guest sessions taken over from a worker whose lease lapsed or that handed them "
    "over.", registry=REGISTRY)
guest_relay_latency = Histogram(
    "parley_guest_relay_seconds", "From an agent-side event reaching its session's relay lane to its guest.* "
    "event being in Redis.", buckets=RELAY_BUCKETS, registry=REGISTRY)

# --- webhook relay ---------------------------------------------------------------------------------
webhook_deliveries = Counter(
    "parley_webhook_deliveries", "Webhook POST attempts by outcome (delivered, failed).", ["outcome"],
    registry=REGISTRY)
webhook_relay_latency = Histogram(
    "parley_webhook_relay_seconds", "From an event's append to parley:events to its acknowledged delivery.",
    buckets=WEBHOOK_BUCKETS, registry=REGISTRY)

KNOWN_TYPES = frozenset(COMMAND_MODELS)
_WORD = re.compile(r"[a-z]*|v[0-9]")  # a route's words ("" around the slashes), and the API version


def command_type(value: str | None) -> str:
    """A command type fit for a label: a producer's unknown ``type`` could be any text."""
    return value if value in KNOWN_TYPES else "unknown"


def command(type_: str | None, outcome: str) -> None:
    commands.labels(type=command_type(type_), outcome=outcome).inc()


def retry(type_: str | None, reason: str) -> None:
    retries.labels(type=command_type(type_), reason=reason).inc()


def genesys_request(operation: str, status: int | str, seconds: float) -> None:
    genesys_requests.labels(operation=operation, status=str(status)).inc()
    genesys_latency.labels(operation=operation).observe(seconds)


def route(method: str, path: str) -> str:
    """A Genesys request as a label: method and path with every id replaced by ``{id}``.

    A path segment that is not a plain word (Genesys ids are UUIDs; ours are percent-encoded) is an id,
    so neither conversation nor member ids reach a label: ``POST /api/v2/conversations/{id}/cobrowse``."""
    parts = [part if _WORD.fullmatch(part) else "{id}" for part in path.split("/")]
    return f"{method} {'/'.join(parts)}"


def entry_age_s(entry_id: str, now: float | None = None) -> float:
    """Seconds since a stream entry was added (its id starts with Redis' clock in milliseconds)."""
    return max(0.0, (now if now is not None else time.time()) - int(entry_id.split("-", 1)[0]) / 1000)


# --- Redis, read when scraped -----------------------------------------------------------------------
LAG_CAP = 1000
"""Redis < 7 has no lag in XINFO GROUPS: it is counted, up to this many entries."""
_COUNT_AFTER = """
return #redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
"""


def queue_depth(client: redis.Redis) -> int:
    """Celery messages waiting on the command queue, every priority list included."""
    pipe = client.pipeline(transaction=False)
    for name in keys.CELERY_QUEUE_LISTS:
        pipe.llen(name)
    return sum(int(n) for n in pipe.execute())


class RedisCollector(Collector):
    """Stream backlog per consumer group, Celery queue depth and dead letters, asked of Redis per scrape."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._client = client
        self._streams = (settings.commands_stream, keys.GUEST_COMMANDS_STREAM, settings.events_stream)
        self._dead = settings.dead_stream
        self._count_after = client.register_script(_COUNT_AFTER)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("parley_redis_up", "1 when Redis answered the scrape's questions.")
        try:
            families = self._families()
        except redis.RedisError as exc:
            log.warning("metrics: Redis did not answer (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> list[Metric]:
        pending = GaugeMetricFamily("parley_stream_pending", "Entries read by a consumer group and not yet "
                                    "acknowledged.", labels=["stream", "group"])
        lag = GaugeMetricFamily("parley_stream_lag", f"Entries not yet read by a consumer group (counted up to "
                                f"{LAG_CAP} on Redis < 7).", labels=["stream", "group"])
        for stream in self._streams:
            for group in self._groups(stream):
                pending.add_metric([stream, group["name"]], int(group["pending"]))
                lag.add_metric([stream, group["name"]], self._lag(stream, group))
        depth = GaugeMetricFamily("parley_celery_queue_depth", "Celery messages waiting in the broker queue.",
                                  labels=["queue"])
        depth.add_metric([keys.CELERY_QUEUE], queue_depth(self._client))
        dead = GaugeMetricFamily("parley_dead_letters", "Dead letters now in the dead-letter stream.")
        dead.add_metric([], int(self._client.xlen(self._dead)))
        return [pending, lag, depth, dead]

    def _groups(self, stream: str) -> list[dict[str, Any]]:
        try:
            return list(self._client.xinfo_groups(stream))
        except redis.ResponseError:
            return []  # no such stream yet

    def _lag(self, stream: str, group: dict[str, Any]) -> int:
        if group.get("lag") is not None:
            return int(group["lag"])
        return int(self._count_after(keys=[stream], args=[group["last-delivered-id"], LAG_CAP]))



class _ThisProcess(Collector):
    """This process's own metrics (a served registry adds the Redis gauges beside them, not into REGISTRY)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


# --- serving ---------------------------------------------------------------------------------------
@dataclass
class Exporter:
    """A running /metrics endpoint."""

    url: str
    server: WSGIServer
    thread: Thread

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def registry(settings: Settings, *, redis_client: redis.Redis | None = None,
             multiprocess_dir: str | None = None) -> CollectorRegistry:
    """What a serving process exports: its own metrics, or the directory's sum; Redis gauges if given a client."""
    served = CollectorRegistry()
    if multiprocess_dir:
        multiprocess.MultiProcessCollector(served, path=multiprocess_dir)
    else:
        served.register(_ThisProcess())
    if redis_client is not None:
        served.register(RedisCollector(redis_client, settings))
    return served


def serve(host: str, port: int, served: CollectorRegistry) -> Exporter | None:
    """Serve ``/metrics`` on host:port; None (with a warning) when the port cannot be bound."""
    try:
        server, thread = start_http_server(port, addr=host, registry=served)
    except OSError as exc:
        log.warning("metrics: cannot listen on %s:%d (%s); /metrics is not served", host, port, exc.strerror)
        return None
    shown = f"[{host}]" if ":" in host else host
    return Exporter(f"http://{shown}:{server.server_port}/metrics", server, thread)


def multiprocess_dir() -> str | None:
    """The directory this process writes its values to, when it is one of several."""
    return os.environ.get(MULTIPROC_ENV) or None


def serve_worker(settings: Settings, *, redis_gauges: bool = False,
                 redis_client: redis.Redis | None = None) -> Exporter | None:
    """A process run on its own: serve /metrics if PARLEY_METRICS_PORT is set (the directory's sum when it is
    the head of several processes, see :func:`prepare_directory`)."""
    if not settings.metrics_port:
        return None
    if redis_gauges and redis_client is None:
        from parley.connections import connect

        redis_client = connect(settings)
    served = registry(settings, redis_client=redis_client if redis_gauges else None,
                      multiprocess_dir=multiprocess_dir())
    exporter = serve(settings.metrics_host, settings.metrics_port, served)
    if exporter is not None:
        log.info("metrics at %s", exporter.url)
    return exporter


@dataclass
class Aggregate:
    """The metrics of a process tree: its children write to ``directory``; ``exporter`` serves the sum."""

    directory: str
    exporter: Exporter | None

    def banner(self) -> str:
        if self.exporter is None:
            return "not served (the port is taken; set PARLEY_METRICS_PORT)"
        return self.exporter.url

    def close(self) -> None:
        if self.exporter is not None:
            self.exporter.close()


def serve_children(settings: Settings, redis_client: redis.Redis) -> Aggregate | None:
    """`parley run`: serve its children's sum and the Redis gauges (on :data:`DEFAULT_RUN_PORT` unless
    PARLEY_METRICS_PORT says otherwise; 0: None, nothing served or written)."""
    port = DEFAULT_RUN_PORT if settings.metrics_port is None else settings.metrics_port
    if not port:
        return None
    directory = os.path.join(os.path.abspath(settings.data_dir), "metrics")
    prepare_directory(directory)
    served = registry(settings, redis_client=redis_client, multiprocess_dir=directory)
    return Aggregate(directory, serve(settings.metrics_host, port, served))


def prepare_directory(path: str) -> None:
    """Empty ``path`` (values of an earlier run would be added in) before the processes that write to it start."""
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def child_environment(path: str) -> dict[str, str]:
    """What a child of a serving process needs: write values to ``path``, serve nothing itself."""
    return {MULTIPROC_ENV: path, "PARLEY_METRICS_PORT": "0"}


def process_exited(pid: int, path: str | None = None) -> None:
    """Drop a dead process's live gauges (its counters stay in the sum)."""
    path = path or multiprocess_dir()
    if path:
        multiprocess.mark_process_dead(pid, path)


def serve_celery_worker(settings: Settings) -> None:
    """Hook the Celery worker: its main process serves the prefork children's sum (when
    PARLEY_METRICS_PORT is set, with PROMETHEUS_MULTIPROC_DIR for the children to write to), and each child
    that exits drops its live gauges."""
    from celery.signals import worker_init, worker_process_shutdown

    def serve_children(**_: object) -> None:
        path = multiprocess_dir()
        if settings.metrics_port and path:
            prepare_directory(path)  # before the pool forks: nothing of an earlier worker is added in
        elif settings.metrics_port:
            log.warning("metrics: the Celery worker serves only its main process's figures; set %s to a "
                        "writable directory to add up its prefork children", MULTIPROC_ENV)
        serve_worker(settings)

    worker_init.connect(serve_children, weak=False)
    worker_process_shutdown.connect(lambda **_: process_exited(os.getpid()), weak=False)


def samples(served: CollectorRegistry) -> Iterable[tuple[str, dict[str, str], float]]:
    """Every sample ``served`` exports now, as (name, labels, value): what tests and tools read."""
    for family in served.collect():
        for sample in family.samples:
            yield sample.name, dict(sample.labels), sample.value
