"""The webhook relay: POST every event of ``parley:events`` to ``PARLEY_WEBHOOK_URL``, signed.

Delivery is at least once and in order: events are read through the consumer group
``parley-webhook`` (:mod:`workers.streams`) and acknowledged only after the endpoint answered 2xx; a
failure holds the line (later events wait) and is retried with exponential backoff, and an event
refused ``PARLEY_WEBHOOK_MAX_ATTEMPTS`` times goes to the dead letters so the line moves on.
Receivers dedupe on the event ``id`` (the ``webhook-id`` and ``X-Parley-Event-Id`` headers).

One relay delivers at a time: it holds a lease (:data:`parley.keys.WEBHOOK_RELAY_LEASE`), and a second
one started beside it (another host, a restart overlapping) stands by and takes over when the lease
lapses, from the events its predecessor left pending. Two at once would deliver events twice and out
of order.

Signatures follow the Standard Webhooks specification (:mod:`parley.webhook_signing`): every attempt
is signed afresh at its own time, under the same ``webhook-id``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

import httpx
import redis

from genesys.effects import SyncRunner
from parley import backoff, keys, metrics
from parley.deadletters import DeadLetters
from parley.events import EVENT_FIELD
from parley.leases import Lease, LeaseLost, try_take
from parley.settings import Settings
from parley.webhook_signing import Signer
from schemas.dead import DeadLetter
from workers.streams import ConsumerGroup, StreamEntry

log = logging.getLogger("parley.webhook")

GROUP = "parley-webhook"
READ_BATCH = 100
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 60.0
STANDBY_POLL_S = 2.0  # a relay standing by looks this often whether the lease is free
HEARTBEAT_TTL_S = BACKOFF_CAP_S + 15
"""Outlives the longest hold of the line: a relay waiting out a failing receiver is not stuck."""


@dataclass(frozen=True)
class Delivery:
    entry_id: str
    body: bytes
    event_id: str
    event_type: str
    attempts: int = 1

    @classmethod
    def of(cls, entry: StreamEntry) -> Delivery:
        raw = entry.fields.get(EVENT_FIELD, "{}")
        event = json.loads(raw)
        return cls(entry.entry_id, raw.encode(), str(event.get("id", entry.entry_id)), str(event.get("type")),
                   entry.deliveries)


class WebhookRelay:
    def __init__(self, client: redis.Redis, settings: Settings, http: httpx.Client | None = None,
                 consumer: str = "relay") -> None:
        if not (settings.webhook_url and settings.webhook_secret):
            raise ValueError("PARLEY_WEBHOOK_URL and PARLEY_WEBHOOK_SECRET must be set")
        self.client = client
        self.settings = settings
        self.url = settings.webhook_url
        self.signer = Signer.of(settings.webhook_secret.get_secret_value())
        self.http = http or httpx.Client(timeout=settings.webhook_timeout_s)
        self.consumer = consumer
        self.dead = DeadLetters(client, settings)
        self.stop_event = threading.Event()
        self._failures = 0
        # start "$": a newly enabled webhook receives events from now on, not the whole history.
        self.source = ConsumerGroup(settings.events_stream, GROUP, consumer, READ_BATCH, start="$")
        self._run = SyncRunner(client).run
        self.lease: Lease | None = None  # held while this relay is the one delivering
        # A delivery may take the whole timeout: the lease outlives one, and is extended before each.
        self._lease_ttl_ms = int((2 * settings.webhook_timeout_s + 5) * 1000)

    def ensure_group(self) -> None:
        self._run(self.source.create())

    def _post(self, delivery: Delivery) -> str | None:
        """Deliver one event; None on success, else why it failed."""
        headers = {"Content-Type": "application/json", "X-Parley-Event-Id": delivery.event_id,
                   "X-Parley-Event-Type": delivery.event_type,
                   **self.signer.headers(delivery.event_id, int(time.time()), delivery.body)}
        try:
            response = self.http.post(self.url, content=delivery.body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}"
        return None if response.is_success else f"HTTP {response.status_code}"

    def deliver(self, deliveries: list[Delivery]) -> bool:
        """Deliver in order; stop at the first failure (returns False) so order is kept."""
        for delivery in deliveries:
            if self.lease is not None:
                self.lease.extend()  # LeaseLost: another relay took over; it delivers from here
            failure = self._post(delivery)
            metrics.webhook_deliveries.labels(outcome="failed" if failure else "delivered").inc()
            if failure is None:
                self.client.xack(self.settings.events_stream, GROUP, delivery.entry_id)
                metrics.webhook_relay_latency.observe(metrics.entry_age_s(delivery.entry_id))
                self._failures = 0
                continue
            attempts = delivery.attempts
            log.warning("webhook delivery of event %s failed (%s), attempt %d", delivery.event_id, failure, attempts)
            if attempts >= self.settings.webhook_max_attempts:
                self._give_up(delivery, failure, attempts)
                continue
            self._failures += 1
            return False
        return True

    def _give_up(self, delivery: Delivery, failure: str, attempts: int) -> None:
        pipe = self.client.pipeline(transaction=True)
        self.dead.add(DeadLetter(stage="webhook", reason=f"webhook refused the event {attempts} times: {failure}",
                                 original=delivery.body.decode(), source_entry_id=delivery.entry_id,
                                 deliveries=attempts), pipe)
        pipe.xack(self.settings.events_stream, GROUP, delivery.entry_id)
        pipe.execute()

    def backoff_s(self) -> float:
        """How long to hold the line after the last failure: no jitter, there is one relay."""
        return backoff.window_s(max(0, self._failures - 1), BACKOFF_BASE_S, BACKOFF_CAP_S)

    def run_once(self, block_ms: int = 1000) -> bool:
        """Retry what is pending first (order), then new events; False when a delivery failed."""
        pending = self._run(self.source.pending())
        if pending:
            return self.deliver([Delivery.of(entry) for entry in pending])
        return self.deliver([Delivery.of(entry) for entry in self._run(self.source.new(block_ms))])

    def run(self) -> None:
        self.ensure_group()
        log.info("webhook relay for %s started", self.settings.events_stream)
        if self.signer.legacy:
            log.warning("PARLEY_WEBHOOK_SECRET holds a plain (non-whsec_) secret: deliveries also carry "
                        "X-Parley-Signature, which is deprecated; move receivers to the Standard Webhooks headers "
                        "and to a whsec_ secret (README, Webhook)")
        heartbeat = keys.heartbeat("webhook", f"{socket.gethostname()}-{os.getpid()}")
        while not self.stop_event.is_set():
            try:
                self.client.set(heartbeat, "1", ex=int(HEARTBEAT_TTL_S))  # `parley health webhook`
                if not self.lead():
                    self.stop_event.wait(STANDBY_POLL_S)
                elif not self.run_once():
                    self.stop_event.wait(self.backoff_s())
            except LeaseLost:
                log.warning("another webhook relay took over; standing by")
                self.lease = None
            except (redis.ConnectionError, redis.TimeoutError):
                self.stop_event.wait(1.0)
        if self.lease is not None:
            self.lease.release()

    def lead(self) -> bool:
        """Hold the relay lease (take it when free): True while this relay is the one delivering."""
        if self.lease is None:
            self.lease = try_take(self.client, keys.WEBHOOK_RELAY_LEASE, self._lease_ttl_ms)
            if self.lease is None:
                return False
            log.info("relaying %s to the webhook (this relay holds the lease)", self.settings.events_stream)
        self.lease.extend()
        return True
