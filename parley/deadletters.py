"""The dead-letter stream: what could not be executed, with the original text and the reason."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from parley import metrics
from parley.events import EVENT_FIELD, EventLog
from parley.settings import Settings
from schemas.dead import DeadLetter
from schemas.events import CommandRejected

DEAD_FIELD = "dead"

# KEYS: dead stream, events stream. ARGV: dead letter JSON, the event's JSON up to and after the dead
# letter's id, events maxlen. The event names the dead letter, whose id exists only once it is added.
_REJECT = f"""
local id = redis.call('XADD', KEYS[1], '*', '{DEAD_FIELD}', ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', '{EVENT_FIELD}', ARGV[2] .. id .. ARGV[3])
return id
"""
_MARK = "dead-letter-id"


@dataclass(frozen=True)
class DeadEntry:
    entry_id: str
    letter: DeadLetter


class DeadLetters:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._client = client
        self.stream = settings.dead_stream
        self._commands = settings.commands_stream

    def add(self, letter: DeadLetter, pipe: redis.client.Pipeline | None = None) -> None:
        metrics.dead_letters.labels(stage=letter.stage).inc()
        target = pipe if pipe is not None else self._client
        target.xadd(self.stream, {DEAD_FIELD: letter.model_dump_json(exclude_none=True)})

    def reject(self, letter: DeadLetter, event: CommandRejected, events: EventLog,
               pipe: redis.client.Pipeline) -> None:
        """Add the dead letter and the ``command.rejected`` event that names it, in ``pipe``'s transaction."""
        metrics.dead_letters.labels(stage=letter.stage).inc()
        payload = events.payload(event.model_copy(update={"dead_letter_id": _MARK}))
        head, mark, tail = payload.rpartition(f'"{_MARK}"')  # dead_letter_id is the event's last field
        assert mark, "CommandRejected lost its dead_letter_id field"
        pipe.eval(_REJECT, 2, self.stream, events.stream, letter.model_dump_json(exclude_none=True),
                  f'{head}"', f'"{tail}', events.maxlen)

    def list(self, count: int = 100, start: str = "-") -> list[DeadEntry]:
        rows = self._client.xrange(self.stream, min=start, count=count)
        return [DeadEntry(entry_id, DeadLetter.model_validate_json(fields[DEAD_FIELD])) for entry_id, fields in rows]

    def get(self, entry_id: str) -> DeadEntry | None:
        rows = self._client.xrange(self.stream, min=entry_id, max=entry_id)
        return DeadEntry(entry_id, DeadLetter.model_validate_json(rows[0][1][DEAD_FIELD])) if rows else None

    def replay(self, entry: DeadEntry) -> str:
        """Put the original command back on the commands stream and drop the dead letter.

        The idempotency key still holds for a command that was accepted before, so replay only
        re-executes what never had an effect (see :meth:`parley.records.Records.release_key_for_replay`).
        """
        pipe = self._client.pipeline(transaction=True)
        pipe.xadd(self._commands, {"command": entry.letter.original})
        pipe.xdel(self.stream, entry.entry_id)
        return str(pipe.execute()[0])
