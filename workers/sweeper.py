"""Re-dispatch commands whose Celery message was lost.

Celery on Redis can lose a message (a task acked after failing while Redis was away, celery#7950 at
shutdown, a broker restart without persistence). Every unfinished command sits in an in-flight
index scored by its last progress; one idle longer than the visibility timeout plus a margin can no
longer be waiting in the broker, so its task is published again. A duplicate is harmless: the
runner skips a command that finished or is running under its lease. A command waiting for an earlier
one on its conversation or customer (:mod:`parley.ordering`) is not published; its lists are woken.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import redis
from celery import Celery

from parley import keys
from parley.ordering import Sequencer, lists_of
from parley.records import CommandRecord, Records
from parley.settings import Settings
from schemas.commands import GUEST_COMMAND_TYPES
from tasks.dispatch import CommandRef, dispatch

log = logging.getLogger("parley.sweeper")


class Sweeper:
    def __init__(self, client: redis.Redis, settings: Settings, celery_app: Celery) -> None:
        self._client = client
        self._settings = settings
        self._celery = celery_app
        self.records = Records(client, settings)
        self.sequencer = Sequencer(client)

    def _wake_behind(self, record: CommandRecord, published: set[str]) -> set[str]:
        """A command waiting its turn (:mod:`parley.ordering`) for this long: the command before it may have
        ended without publishing the next one (its worker died in between), or left no record. Waking its
        lists publishes whoever's turn it is (once per sweep: ``published``); the waiting command itself stays
        unpublished until then."""
        self.records.touch(record.command_id)
        woken = [w for w in self.sequencer.wake(lists_of(record.order_keys)) if w.command_id not in published]
        for command in woken:
            log.warning("command %s waited past its turn; dispatching it", command.command_id)
            dispatch(self._celery, CommandRef(**asdict(command)))
        return {command.command_id for command in woken}

    def sweep(self) -> int:
        """Re-dispatch stalled commands; returns how many were sent again."""
        sent: set[str] = set()
        for command_id in self.records.stalled(self._settings.stall_after_s):
            if command_id in sent:
                continue  # woken earlier in this sweep
            record = self.records.get(command_id)
            if record is None or record.state.terminal or record.type in GUEST_COMMAND_TYPES:
                self.records.forget(command_id)  # expired, finished, or owned by the guest worker
                continue
            if self._client.exists(keys.execution_lease(command_id)):
                self.records.touch(command_id)  # running right now
                continue
            if not self.sequencer.ready(command_id):
                sent |= self._wake_behind(record, sent)
                continue
            log.warning("command %s (%s) made no progress for %ss; dispatching it again",
                        command_id, record.type, self._settings.stall_after_s)
            dispatch(self._celery, CommandRef(command_id=command_id, type=record.type, org=record.org,
                                              idempotency_key=record.idempotency_key))
            self.records.touch(command_id)
            sent.add(command_id)
        return len(sent)
