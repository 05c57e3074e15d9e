"""How a command ends: its record, its event and (on failure) its dead letter, in one transaction.

Shared by every executor (the Celery runner, the guest worker), so a command ends the same way
wherever it ran and the state change and the event can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import redis

from parley import keys
from parley.deadletters import DeadLetters
from parley.events import EventLog
from parley.records import CommandRecord, Records, State
from parley.settings import Settings
from schemas.common import utcnow
from schemas.dead import DeadLetter
from schemas.events import CommandExpired, CommandFailed, CommandResult, CommandSucceeded, EventBase, GenesysErrorInfo

StagedWrite = Callable[[redis.client.Pipeline], None]


def about(record: CommandRecord) -> dict[str, str | None]:
    """The fields every event about this command carries."""
    return {
        "idempotency_key": record.idempotency_key, "correlation_id": record.correlation_id,
        "command_type": record.type, "command_id": record.command_id, "org": record.org,
    }


class Outcomes:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.records = Records(client, settings)
        self.events = EventLog(client, settings)
        self.dead = DeadLetters(client, settings)

    def succeed(self, record: CommandRecord, result: CommandResult, *extra: EventBase,
                staged: Sequence[StagedWrite] = ()) -> None:
        """Mark succeeded and append ``command.succeeded`` (and any ``extra`` events) atomically.

        ``staged`` writes (the executor's state cache updates, lease releases) join the transaction.
        """
        pipe = self.client.pipeline(transaction=True)
        for write in staged:
            write(pipe)
        self.records.set_fields(record.command_id, pipe, state=State.succeeded.value,
                                result=result.model_dump_json(exclude_none=True),
                                finished_at=utcnow().isoformat(), unknown_outcome=0)
        pipe.hdel(keys.command(record.command_id), "unknown_since")
        self.events.append(CommandSucceeded(**about(record), result=result), pipe)
        for event in extra:
            self.events.append(event, pipe)
        pipe.execute()

    def fail(self, record: CommandRecord, reason: str, error: GenesysErrorInfo | None = None,
             hint: str | None = None, staged: Sequence[StagedWrite] = ()) -> None:
        """Mark failed, append ``command.failed`` and keep the command as a dead letter."""
        pipe = self.client.pipeline(transaction=True)
        for write in staged:
            write(pipe)
        self.records.set_fields(record.command_id, pipe, state=State.failed.value, finished_at=utcnow().isoformat())
        self.events.append(CommandFailed(**about(record), reason=reason, attempts=record.attempts,
                                         error=error, hint=hint), pipe)
        self.dead.add(DeadLetter(stage="execute", reason=reason, original=record.body,
                                 source_entry_id=record.source_entry_id, command_id=record.command_id,
                                 command_type=record.type, idempotency_key=record.idempotency_key,
                                 deliveries=record.deliveries, error=error), pipe)
        pipe.execute()

    def expire(self, record: CommandRecord, expires_at: datetime, staged: Sequence[StagedWrite] = ()) -> None:
        pipe = self.client.pipeline(transaction=True)
        for write in staged:
            write(pipe)
        self.records.set_fields(record.command_id, pipe, state=State.expired.value, finished_at=utcnow().isoformat())
        self.events.append(CommandExpired(**about(record), expires_at=expires_at), pipe)
        pipe.execute()
