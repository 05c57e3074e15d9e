"""How a command ends: its record, its event and (on failure) its dead letter, in one transaction.

Shared by every executor (the Celery runner, the guest worker), so a command ends the same way
wherever it ran and the state change and the event can never disagree.

An ending is data first: :class:`Endings` gives its Redis writes as a list of commands
(:data:`Writes`), and each executor sends them its own way, both atomic. The Celery runner's
:class:`Outcomes` runs them in a MULTI/EXEC transaction with the executor's own staged writes; the
guest worker passes them, as they are, to the script that also takes a session's next command
(:mod:`workers.guest.commands`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import redis

from parley import keys, metrics
from parley.deadletters import DEAD_FIELD
from parley.events import EVENT_FIELD
from parley.records import CommandRecord, State
from parley.settings import Settings
from schemas.common import utcnow
from schemas.dead import DeadLetter
from schemas.events import CommandExpired, CommandFailed, CommandResult, CommandSucceeded, EventBase, GenesysErrorInfo

StagedWrite = Callable[[redis.client.Pipeline], None]
RedisWrite = tuple[str | int, ...]
"""One Redis command as data: its name, then its arguments."""
Writes = list[RedisWrite]


def about(record: CommandRecord) -> dict[str, str | None]:
    """The fields every event about this command carries."""
    return {
        "idempotency_key": record.idempotency_key, "correlation_id": record.correlation_id,
        "command_type": record.type, "command_id": record.command_id, "org": record.org,
    }


class Endings:
    """A command's ending as the Redis writes that record it: no client, nothing sent.

    Each ending is counted here (``parley_commands_total``), the one place both executors pass: when its
    writes are made, so an ending whose write fails and is made again (Redis away) counts twice."""

    def __init__(self, settings: Settings) -> None:
        self._events_stream = settings.events_stream
        self._events_maxlen = settings.events_maxlen
        self._dead_stream = settings.dead_stream

    def succeeded(self, record: CommandRecord, result: CommandResult, *extra: EventBase) -> Writes:
        """Mark succeeded and append ``command.succeeded`` (and any ``extra`` events)."""
        metrics.command(record.type, "succeeded")
        key = keys.command(record.command_id)
        return [
            *self._finish(record, State.succeeded, result=result.model_dump_json(exclude_none=True),
                          unknown_outcome="0"),
            ("HDEL", key, "unknown_since"),
            self.event(CommandSucceeded(**about(record), result=result)),
            *(self.event(event) for event in extra),
        ]

    def failed(self, record: CommandRecord, reason: str, error: GenesysErrorInfo | None = None,
               hint: str | None = None) -> Writes:
        """Mark failed, append ``command.failed`` and keep the command as a dead letter."""
        metrics.command(record.type, "failed")
        metrics.dead_letters.labels(stage="execute").inc()
        letter = DeadLetter(stage="execute", reason=reason, original=record.body,
                            source_entry_id=record.source_entry_id, command_id=record.command_id,
                            command_type=record.type, idempotency_key=record.idempotency_key,
                            deliveries=record.deliveries, error=error)
        return [
            *self._finish(record, State.failed),
            self.event(CommandFailed(**about(record), reason=reason, attempts=record.attempts, error=error, hint=hint)),
            ("XADD", self._dead_stream, "*", DEAD_FIELD, letter.model_dump_json(exclude_none=True)),
        ]

    def expired(self, record: CommandRecord, expires_at: datetime) -> Writes:
        metrics.command(record.type, "expired")
        expired = CommandExpired(**about(record), expires_at=expires_at)
        return [*self._finish(record, State.expired), self.event(expired)]

    def event(self, event: EventBase) -> RedisWrite:
        """Append ``event`` to the events stream (as :meth:`parley.events.EventLog.append` does)."""
        return ("XADD", self._events_stream, "MAXLEN", "~", self._events_maxlen, "*",
                EVENT_FIELD, event.model_dump_json(by_alias=True, exclude_none=True))

    @staticmethod
    def _finish(record: CommandRecord, state: State, **fields: str) -> Writes:
        """The record's final state, out of the in-flight index (as Records.set_fields does for a terminal state)."""
        flat = [x for pair in fields.items() for x in pair]
        return [("HSET", keys.command(record.command_id), "state", state.value, *flat,
                 "finished_at", utcnow().isoformat()),
                ("ZREM", keys.INFLIGHT_ZSET, record.command_id)]


class Outcomes:
    """Endings run in a MULTI/EXEC transaction, with whatever the executor stages in it."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.endings = Endings(settings)

    def succeed(self, record: CommandRecord, result: CommandResult, *extra: EventBase,
                staged: Sequence[StagedWrite] = ()) -> None:
        """Mark succeeded and append ``command.succeeded`` (and any ``extra`` events) atomically.

        ``staged`` writes (the executor's state cache updates, lease releases) join the transaction.
        """
        self.commit(self.endings.succeeded(record, result, *extra), staged)

    def fail(self, record: CommandRecord, reason: str, error: GenesysErrorInfo | None = None,
             hint: str | None = None, staged: Sequence[StagedWrite] = ()) -> None:
        """Mark failed, append ``command.failed`` and keep the command as a dead letter."""
        self.commit(self.endings.failed(record, reason, error, hint), staged)

    def expire(self, record: CommandRecord, expires_at: datetime, staged: Sequence[StagedWrite] = ()) -> None:
        self.commit(self.endings.expired(record, expires_at), staged)

    def commit(self, writes: Writes, staged: Sequence[StagedWrite] = ()) -> None:
        """Run ``staged`` then ``writes`` in one transaction."""
        pipe = self.client.pipeline(transaction=True)
        for write in staged:
            write(pipe)
        for command in writes:
            pipe.execute_command(*command)
        pipe.execute()
