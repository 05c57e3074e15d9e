"""The dead-letter stream: what could not be executed, with the original text and the reason."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from parley.settings import Settings
from schemas.dead import DeadLetter

DEAD_FIELD = "dead"


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
        target = pipe if pipe is not None else self._client
        target.xadd(self.stream, {DEAD_FIELD: letter.model_dump_json(exclude_none=True)})

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
