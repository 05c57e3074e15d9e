"""The command side of the guest worker: read a command's record, end it.

Commands end through :class:`parley.outcomes.Endings`, the one place that says what ending a command
writes (record state, the event, the dead letter). It gives those writes as data, and here they go
to Redis as script arguments ("words", :data:`RUN_WORDS`): alone (:meth:`CommandDesk.succeed`,
:meth:`~CommandDesk.fail`, one script, as atomic as MULTI/EXEC, on the coalesced pipeline of
:mod:`workers.guest.batch`), or in the script that also takes a session's next command, for which
:meth:`~CommandDesk.succeeded` and :meth:`~CommandDesk.failed` give them. Only the rare state cache
writes go to a thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from parley import keys, logs
from parley.outcomes import Endings, Writes, about
from parley.records import CommandRecord
from parley.settings import Settings
from schemas.commands import Command
from schemas.events import CommandResult, CommandRetrying, EventBase, GenesysErrorInfo
from schemas.validation import Rejection, parse_command
from workers.guest.batch import RedisBatcher

log = logging.getLogger("parley.guest.commands")

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


def _texts(data: dict[bytes | str, bytes | str]) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in data.items()}


# Recorded commands as script arguments ("words"): for each command, its length n then its n words.
# Run in one script they are atomic, as MULTI/EXEC would be. Shared with the store's take script, which
# records a command's ending and takes the next command in one round trip.
RUN_WORDS = """
local function run_words(words, from)
  local i = from
  while i <= #words do
    local n = tonumber(words[i])
    redis.call(unpack(words, i + 1, i + n))
    i = i + n + 1
  end
end
"""
_ATOMIC = RUN_WORDS + "run_words(ARGV, 1)\nreturn 1\n"

Words = Sequence[str | int | float]


def words(writes: Writes) -> Words:
    """Redis writes as script arguments: for each command its length, then the command."""
    flat: list[str | int | float] = []
    for command in writes:
        flat += [len(command), *command]
    return flat


class CommandDesk:
    def __init__(self, batcher: RedisBatcher, settings: Settings,
                 executor: ThreadPoolExecutor) -> None:
        self.redis = batcher.redis
        self._batcher = batcher
        self._atomic = batcher.script(_ATOMIC)
        self.endings = Endings(settings)
        self._executor = executor

    async def run_sync(self, fn: Callable[..., T], *args: object) -> T:
        """Run a blocking Redis helper (the state cache) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args))

    async def record(self, command_id: str) -> CommandRecord | None:
        data = await self.redis.hgetall(keys.command(command_id))
        return CommandRecord.model_validate(_texts(data)) if data else None

    async def load(self, command_id: str) -> Loaded | None:
        """The record and its parsed command; None when the record is gone (retention passed)."""
        return self.parse(_texts(await self.redis.hgetall(keys.command(command_id))))

    @staticmethod
    def parse(fields: dict[str, str]) -> Loaded | None:
        """A record read elsewhere (a script returned its fields) and its parsed command."""
        if not fields:
            return None
        record = CommandRecord.model_validate(fields)
        try:
            return Loaded(record, parse_command(record.body))
        except Rejection as rejection:
            raise UnreadableCommand(record, rejection.reason) from None

    def succeeded(self, record: CommandRecord, result: CommandResult, *extra: EventBase) -> Words:
        """The success as words, for a script to run (:data:`RUN_WORDS`)."""
        # DEBUG: a worker confirms hundreds of guest messages a second, and a line costs ~0.2 ms of the
        # core they share (measured); each success is an event and a metric already. Failures stay WARNING.
        if log.isEnabledFor(logging.DEBUG):
            with logs.command_span(record):
                log.debug("succeeded (conversation %s)", result.conversation_id)
        return words(self.endings.succeeded(record, result, *extra))

    def failed(self, record: CommandRecord, reason: str, error: GenesysErrorInfo | None = None,
               hint: str | None = None) -> Words:
        """The failure as words, for a script to run (:data:`RUN_WORDS`)."""
        with logs.command_span(record):
            log.warning("failed for good: %s%s", reason, logs.genesys_said(error))
        return words(self.endings.failed(record, reason, error, hint))

    async def succeed(self, record: CommandRecord, result: CommandResult, *extra: EventBase) -> None:
        await self._atomic([], self.succeeded(record, result, *extra))

    async def fail(self, record: CommandRecord, reason: str, error: GenesysErrorInfo | None = None,
                   hint: str | None = None) -> None:
        await self._atomic([], self.failed(record, reason, error, hint))

    async def retrying(self, record: CommandRecord, attempt: int, delay_s: float, reason: str,
                       error: GenesysErrorInfo | None = None) -> None:
        event = CommandRetrying(**about(record), attempt=attempt, delay_s=delay_s, reason=reason, error=error)
        with logs.command_span(record):
            log.info("retrying in %.1f s (attempt %d): %s%s", delay_s, attempt, reason, logs.genesys_said(error))
        await self.redis.execute_command(*self.endings.event(event))
