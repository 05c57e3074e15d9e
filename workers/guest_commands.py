"""The command side of the guest worker: read a command's record, mark it running, end it.

Commands end through :class:`parley.outcomes.Outcomes`, the one place that writes record state, the
event and the dead letter in a single transaction. It is a synchronous API; endings are rare next to
relayed messages, so they run on a small thread pool instead of blocking the event loop. Reads and
the ``running`` mark use the asyncio client with the same record helpers (they only stage commands
on the pipeline they are given).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import redis
import redis.asyncio as aredis

from parley import keys
from parley.outcomes import Outcomes, about
from parley.records import CommandRecord, State
from parley.settings import Settings
from schemas.commands import Command
from schemas.common import utcnow
from schemas.events import CommandResult, CommandRetrying, EventBase, GenesysErrorInfo
from schemas.validation import Rejection, parse_command

T = TypeVar("T")


@dataclass(frozen=True)
class Loaded:
    record: CommandRecord
    command: Command


class UnreadableCommand(Exception):
    """The record exists but its body no longer parses (changed schema, damaged record)."""

    def __init__(self, record: CommandRecord, reason: str) -> None:
        super().__init__(reason)
        self.record = record


class CommandDesk:
    def __init__(self, sync_client: redis.Redis, client: aredis.Redis, settings: Settings,
                 executor: ThreadPoolExecutor) -> None:
        self.redis = client
        self.outcomes = Outcomes(sync_client, settings)
        self._executor = executor

    async def run_sync(self, fn: Callable[..., T], *args: object) -> T:
        """Run a blocking Redis helper (Outcomes, the state cache) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args))

    async def record(self, command_id: str) -> CommandRecord | None:
        data = await self.redis.hgetall(keys.command(command_id))
        if not data:
            return None
        text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                for k, v in data.items()}
        return CommandRecord.model_validate(text)

    async def load(self, command_id: str) -> Loaded | None:
        """The record and its parsed command; None when the record is gone (retention passed)."""
        record = await self.record(command_id)
        if record is None:
            return None
        try:
            return Loaded(record, parse_command(record.body))
        except Rejection as rejection:
            raise UnreadableCommand(record, rejection.reason) from None

    async def running(self, record: CommandRecord) -> CommandRecord:
        """Mark the command running (one more attempt); returns the record as it now reads."""
        attempts = record.attempts + 1
        started = utcnow().isoformat()
        async with self.redis.pipeline(transaction=True) as pipe:
            self.outcomes.records.set_fields(record.command_id, pipe, state=State.running.value,  # type: ignore[arg-type]
                                             attempts=attempts, started_at=started)
            await pipe.execute()
        return record.model_copy(update={"state": State.running, "attempts": attempts, "started_at": started})

    async def succeed(self, record: CommandRecord, result: CommandResult, *extra: EventBase) -> None:
        await self.run_sync(self.outcomes.succeed, record, result, *extra)

    async def fail(self, record: CommandRecord, reason: str, error: GenesysErrorInfo | None = None,
                   hint: str | None = None) -> None:
        await self.run_sync(partial(self.outcomes.fail, record, reason, error=error, hint=hint))

    async def retrying(self, record: CommandRecord, attempt: int, delay_s: float, reason: str,
                       error: GenesysErrorInfo | None = None) -> None:
        event = CommandRetrying(**about(record), attempt=attempt, delay_s=delay_s, reason=reason, error=error)
        async with self.redis.pipeline(transaction=False) as pipe:
            self.outcomes.events.append(event, pipe)  # type: ignore[arg-type]
            await pipe.execute()
