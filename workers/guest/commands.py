"""The command side of the guest worker: read a command's record, end it.

Commands end through :class:`parley.outcomes.Outcomes`, the one place that writes record state, the
event and the dead letter in a single transaction. Outcomes is synchronous, and a thread pool is no
answer at hundreds of endings a second (each thread waits for the GIL behind the busy event loop), so
Outcomes runs unchanged against a client whose pipelines record their transaction instead of sending
it (:class:`_Recorder`); the recorded commands are then run by one Lua script (:data:`_ATOMIC`), which
Redis executes as atomically as MULTI/EXEC, on the coalesced pipeline of :mod:`workers.guest.batch`.
A session runner records an ending in the same script that takes its next command (and marks that one
running): :meth:`succeeded` and :meth:`failed` give the ending as script arguments for it. Only the
rare state cache writes go to a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import redis

from parley import keys
from parley.outcomes import Outcomes, about
from parley.records import CommandRecord
from parley.settings import Settings
from schemas.commands import Command
from schemas.events import CommandResult, CommandRetrying, EventBase, GenesysErrorInfo
from schemas.validation import Rejection, parse_command
from workers.guest.batch import RedisBatcher

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


class _RecordingPipeline(redis.client.Pipeline):
    """Stages commands like any transaction; ``execute`` hands them to the recorder instead of Redis."""

    recorder: _Recorder

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        self.recorder.stacks.append(list(self.command_stack))
        self.reset()
        return []


class _Recorder(redis.Redis):
    """A client that never connects: its pipelines record (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(decode_responses=True)
        self.stacks: list[list[tuple[tuple[Any, ...], dict[str, Any]]]] = []

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> _RecordingPipeline:
        pipe = _RecordingPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.recorder = self
        return pipe


class CommandDesk:
    def __init__(self, batcher: RedisBatcher, settings: Settings,
                 executor: ThreadPoolExecutor) -> None:
        self.redis = batcher.redis
        self._batcher = batcher
        self._atomic = batcher.script(_ATOMIC)
        self._recorder = _Recorder()
        self.outcomes = Outcomes(self._recorder, settings)
        self._executor = executor

    async def run_sync(self, fn: Callable[..., T], *args: object) -> T:
        """Run a blocking Redis helper (Outcomes, the state cache) off the event loop."""
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
        self.outcomes.succeed(record, result, *extra)
        return self._recorded()

    def failed(self, record: CommandRecord, reason: str, error: GenesysErrorInfo | None = None,
               hint: str | None = None) -> Words:
        """The failure as words, for a script to run (:data:`RUN_WORDS`)."""
        self.outcomes.fail(record, reason, error=error, hint=hint)
        return self._recorded()

    async def succeed(self, record: CommandRecord, result: CommandResult, *extra: EventBase) -> None:
        await self._atomic([], self.succeeded(record, result, *extra))

    async def fail(self, record: CommandRecord, reason: str, error: GenesysErrorInfo | None = None,
                   hint: str | None = None) -> None:
        await self._atomic([], self.failed(record, reason, error, hint))

    def _recorded(self) -> Words:
        (stack,) = self._recorder.stacks  # Outcomes ran synchronously just now: exactly one transaction
        self._recorder.stacks.clear()
        words: list[str | int | float] = []
        for args, _options in stack:
            words += [len(args), *(a.decode() if isinstance(a, bytes) else a for a in args)]
        return words

    async def retrying(self, record: CommandRecord, attempt: int, delay_s: float, reason: str,
                       error: GenesysErrorInfo | None = None) -> None:
        event = CommandRetrying(**about(record), attempt=attempt, delay_s=delay_s, reason=reason, error=error)
        async with self.redis.pipeline(transaction=False) as pipe:
            self.outcomes.events.append(event, pipe)  # type: ignore[arg-type]
            await pipe.execute()
