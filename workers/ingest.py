"""The ingestion worker: ``parley:commands`` -> validated, deduplicated Celery tasks.

At-least-once from the stream (:mod:`workers.streams`): entries are read through a consumer group and
XACKed only after the command is safely handed on (Celery message published, or dead letter written).
On start a consumer first takes over every entry still pending in the group (its own, then a dead
consumer's, whatever their idle time), before any new one, so commands keep their order across a restart;
later, entries left pending by a consumer that died are reclaimed with XAUTOCLAIM once idle for
``claim_idle_ms``. An entry delivered more than
``max_deliveries`` times goes to the dead letters instead of looping. Duplicates are caught by the
idempotency record (:mod:`parley.records`), so a crash between publish and XACK costs at most a
duplicate Celery message, which the runner's execution guard skips.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis
from celery import Celery

from genesys.effects import SyncRunner
from parley import keys, logs, metrics, tracing
from parley.deadletters import DeadLetters
from parley.events import EventLog
from parley.ordering import Sequencer, order_keys
from parley.orgs import require_known_org
from parley.records import Claim, Records
from parley.settings import Settings
from schemas.commands import GUEST_COMMAND_TYPES, Command
from schemas.dead import DeadLetter
from schemas.events import CommandDuplicate, CommandRejected
from schemas.validation import Rejection, parse_command
from tasks.dispatch import CommandRef, dispatch
from workers.guest.handoff import HandOff
from workers.streams import ConsumerGroup, StreamEntry
from workers.sweeper import Sweeper

log = logging.getLogger("parley.ingest")

COMMAND_FIELD = "command"
MAINTENANCE_EVERY_S = 5.0
"""How often to reclaim a dead consumer's entries and re-dispatch stalled commands."""
HEARTBEAT_TTL_S = 15


@dataclass(frozen=True)
class Entry:
    entry_id: str
    raw: str | None
    deliveries: int = 1
    traceparent: str | None = None

    @classmethod
    def of(cls, entry: StreamEntry) -> Entry:
        return cls(entry.entry_id, entry.fields.get(COMMAND_FIELD), entry.deliveries,
                   tracing.valid_traceparent(entry.fields.get(tracing.TRACEPARENT)))


class Dispatcher:
    """Hands an accepted command on: REST commands to Celery, guest commands to the guest workers."""

    def __init__(self, client: redis.Redis, celery_app: Celery) -> None:
        self._client = client
        self._celery = celery_app

    def dispatch(self, claim: Claim, command: Command, pipe: redis.client.Pipeline) -> None:
        """Publish (REST) or stage in ``pipe`` (guest) the hand-off of one accepted command."""
        if command.type in GUEST_COMMAND_TYPES:
            # Same transaction as the XACK: a guest command is handed on exactly once.
            pipe.xadd(keys.GUEST_COMMANDS_STREAM, HandOff.of(claim.command_id, command).fields())  # type: ignore[arg-type]
            return
        dispatch(self._celery, CommandRef(command_id=claim.command_id, type=command.type, org=command.org,
                                          idempotency_key=command.idempotency_key, targets=command.targets),
                 command.lane)


class IngestWorker:
    def __init__(self, client: redis.Redis, settings: Settings, celery_app: Celery,
                 consumer: str | None = None, reader: redis.Redis | None = None) -> None:
        """``reader``, a client that does not decode replies, reads the stream: a producer's bytes that
        are not UTF-8 then reach :meth:`process` as a rejection, instead of failing every read of the
        batch (a decoding client raises on them, and the entry would stay first in line for good)."""
        self.client = client
        self.settings = settings
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.records = Records(client, settings)
        self.events = EventLog(client, settings)
        self.dead = DeadLetters(client, settings)
        self.dispatcher = Dispatcher(client, celery_app)
        self.sweeper = Sweeper(client, settings, celery_app)
        self.sequencer = Sequencer(client)
        self.stop_event = threading.Event()
        self.stream = settings.commands_stream
        self.group = settings.consumer_group
        # start "0": commands added before the group existed are processed too.
        self.source = ConsumerGroup(self.stream, self.group, self.consumer, settings.read_batch, start="0")
        self._run = SyncRunner(client).run
        self._read_run = SyncRunner(reader or client).run

    # -- setup -------------------------------------------------------------------------------
    def ensure_group(self) -> None:
        self._run(self.source.create())

    # -- reading -----------------------------------------------------------------------------
    def _read(self, start: str, block_ms: int | None) -> list[Entry]:
        """New entries (``start`` ">"), or this consumer's pending ones ("0")."""
        plan = self.source.new(block_ms) if start == ">" else self.source.pending()
        return [Entry.of(entry) for entry in self._read_run(plan)]

    def own_pending(self) -> list[Entry]:
        """Entries this consumer read before a restart but never acknowledged."""
        return self._read("0", None)

    def take_over_backlog(self) -> None:
        """Before any new entry: this consumer's own pending entries, then every entry still pending in the
        group whatever its idle time (a dead consumer's: a restarted worker has a new name), in stream order,
        so commands keep their order across an ingest restart (:mod:`parley.ordering`). An entry a live
        consumer holds is at worst handled twice, which its idempotency key absorbs."""
        self._process_all(self.own_pending())
        self._process_all([Entry.of(entry) for entry in self._read_run(self.source.claim(0))])

    def reclaim(self) -> list[Entry]:
        """Entries of consumers that stopped acknowledging (dead), taken over by this one."""
        return [Entry.of(entry) for entry in self._read_run(self.source.claim(self.settings.claim_idle_ms))]

    # -- processing --------------------------------------------------------------------------
    def process(self, entry: Entry, pipe: redis.client.Pipeline | None = None) -> None:
        """Handle one entry; its writes (XACK included) go into ``pipe``, committed with its batch."""
        if pipe is None:
            pipe = self.client.pipeline(transaction=True)
            self.process(entry, pipe)
            pipe.execute()
            return
        with tracing.processing(self.stream, entry.traceparent) as traced:
            self._process(entry, pipe, traced)

    def _process(self, entry: Entry, pipe: redis.client.Pipeline, traced: tracing.Traced) -> None:
        if entry.deliveries > self.settings.max_deliveries:
            reason = (f"delivered {entry.deliveries} times without being processed "
                      f"(limit {self.settings.max_deliveries}); it may crash the ingestion worker")
            self._reject(entry, Rejection(reason), pipe)
            return
        if entry.raw is not None and not _utf8(entry.raw):
            self._reject(entry, Rejection("the command is not valid UTF-8 text (the dead letter shows the bytes "
                                          "that are not as \\xNN)"), pipe)
            return
        if entry.raw is None:
            self._reject(entry, Rejection(f"stream entry has no '{COMMAND_FIELD}' field"), pipe)
            return
        try:
            command = parse_command(entry.raw)
            require_known_org(command, self.settings.orgs)
        except Rejection as rejection:
            self._reject(entry, rejection, pipe)
            return
        claim = self.records.claim(command, uuid.uuid4().hex, entry.raw, entry.entry_id, order_keys(command),
                                   traced.traceparent)
        traced.set(message_id=claim.command_id, command_type=command.type)
        if claim.new:
            metrics.command(command.type, "accepted")  # the claim appended command.accepted
        with logs.about_command(command, claim.command_id):
            if claim.new or claim.record.source_entry_id == entry.entry_id:
                self._hand_on(entry, claim, command, pipe)
            else:
                self._duplicate(entry, claim, command, pipe)

    def _hand_on(self, entry: Entry, claim: Claim, command: Command, pipe: redis.client.Pipeline) -> None:
        # A command behind an earlier one on its conversation or customer is published when that one
        # finishes (parley.ordering); until then it holds no Celery message.
        if not claim.record.dispatched and (claim.ready if claim.new else self.sequencer.ready(claim.command_id)):
            self.dispatcher.dispatch(claim, command, pipe)
            self.records.set_fields(claim.command_id, pipe, dispatched=1)
            log.debug("accepted and handed on")
        pipe.xack(self.stream, self.group, entry.entry_id)

    def _duplicate(self, entry: Entry, claim: Claim, command: Command, pipe: redis.client.Pipeline) -> None:
        metrics.command(command.type, "duplicate")
        log.info("a duplicate (the key's command is %s); nothing new happens", claim.record.state.value)
        self.events.append(CommandDuplicate(
            idempotency_key=command.idempotency_key, correlation_id=command.correlation_id,
            command_type=command.type, command_id=claim.command_id, org=command.org,
            original_command_id=claim.command_id, original_state=claim.record.state.value,
        ), pipe)
        pipe.xack(self.stream, self.group, entry.entry_id)

    def _reject(self, entry: Entry, rejection: Rejection, pipe: redis.client.Pipeline) -> None:
        log.warning("rejected stream entry %s: %s", entry.entry_id, rejection.reason)
        metrics.command(rejection.command_type, "rejected")
        command_id = uuid.uuid4().hex  # links the event, the dead letter and a replay's outcome
        letter = DeadLetter(stage="ingest", reason=rejection.reason, original=_printable(entry.raw or ""),
                            source_entry_id=entry.entry_id, command_id=command_id,
                            command_type=rejection.command_type, idempotency_key=rejection.idempotency_key,
                            deliveries=entry.deliveries, errors=list(rejection.errors))
        self.dead.reject(letter, CommandRejected(
            idempotency_key=rejection.idempotency_key, correlation_id=rejection.correlation_id,
            command_type=rejection.command_type, command_id=command_id, source_entry_id=entry.entry_id,
            reason=rejection.reason, errors=list(rejection.errors),
        ), self.events, pipe)
        pipe.xack(self.stream, self.group, entry.entry_id)

    def _process_all(self, entries: list[Entry]) -> None:
        """Process a batch; its acks, flags, events and dead letters commit in one transaction.

        A crash before the commit only means redelivery: claims are idempotent and a re-published
        Celery message is skipped by the runner.
        """
        if not entries:
            return
        pipe = self.client.pipeline(transaction=True)
        for entry in entries:
            staged = len(pipe)
            try:
                self.process(entry, pipe)
            except redis.RedisError:
                raise  # the loop reconnects; the batch stays pending and is read again
            except Exception:
                # A bug must not stop ingestion: the entry stays pending, is redelivered on restart
                # or reclaim, and is dead-lettered once it exceeds max_deliveries.
                log.exception("failed to process stream entry %s", entry.entry_id)
                del pipe.command_stack[staged:]  # drop what this entry had staged
        pipe.execute()

    # -- loop --------------------------------------------------------------------------------
    def heartbeat(self) -> None:
        self.client.set(keys.heartbeat("ingest", self.consumer), "1", ex=HEARTBEAT_TTL_S)

    def run_once(self, block_ms: int | None = None) -> int:
        """One read-and-process round; returns how many entries were handled."""
        self.heartbeat()
        # New entries (">") are on their first delivery: no XPENDING lookup needed.
        entries = self._read(">", self.settings.read_block_ms if block_ms is None else block_ms)
        self._process_all(entries)
        return len(entries)

    def trim(self) -> int:
        """Drop handled entries older than ``commands_keep_s`` from the commands stream (never a pending one)."""
        removed = self._run(self.source.trim(int(time.time() * 1000) - self.settings.commands_keep_s * 1000))
        if removed:
            log.info("trimmed %d handled entries from %s", removed, self.stream)
        return removed

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        self.ensure_group()
        self.take_over_backlog()
        if on_ready:
            on_ready()
        log.info("ingesting %s as %s/%s", self.stream, self.group, self.consumer)
        last_maintenance = time.monotonic()
        while not self.stop_event.is_set():
            try:
                self.run_once()
                if time.monotonic() - last_maintenance >= MAINTENANCE_EVERY_S:
                    last_maintenance = time.monotonic()
                    self._process_all(self.reclaim())
                    self.sweeper.sweep()
                    self.trim()
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                if self.stop_event.is_set():
                    break  # the stop signal cut a blocking read short: not an outage
                log.warning("Redis unavailable; retrying")
                self.stop_event.wait(1.0)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self.ensure_group()  # the stream or group was deleted: start over from what is there

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())


def _utf8(text: str) -> bool:
    """False for text read from bytes that were not UTF-8 (they arrive as surrogate escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    """The text as it can be stored and shown: bytes that were not UTF-8 as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
