"""Many sessions' Redis commands coalesced into one batch per event-loop turn (or short window).

Thousands of session runners each make a few small Redis calls per message (take the next command,
relay an event, mark a record). One round trip each costs more in client overhead (connection
checkout, a write and a read per call) than Redis spends on them, so calls made in the same turn of
the event loop go out together in one write on a multiplexed connection (:mod:`workers.guest.redis_mux`),
like a non-transactional pipeline. Each caller still awaits its own results, and a caller's calls keep
their order (it awaits one before it makes the next); every script stays atomic on its own.

A batch can also wait a little for company (``window_s``, ``PARLEY_GUEST_BATCH_WINDOW_S``): at ten
thousand sessions and 500 messages a second, batches formed within one loop turn held barely more than
one call, and a 1 ms window cut the worker's CPU by about a tenth (fewer batches, writes, reads and
wake-ups) for a millisecond more per Redis call; measured with ``bench/bench_guest.py``.

The worker's connections also pack commands with hiredis (:func:`pack_with_hiredis`): redis-py's
asyncio connection packs in Python, argument by argument, which profiling showed to be the largest
single cost of the worker under traffic (the scripts carry events and records as many arguments).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError

from workers.guest.redis_mux import RedisMux

try:
    import hiredis
except ImportError:  # redis[hiredis] brings it; without it redis-py's own packing stays
    hiredis = None


def _hiredis_pack(args: tuple[Any, ...]) -> bytes:
    """One command in RESP, as redis-py's sync client packs it when hiredis is there (same encoding
    of str, bytes, int and float; a multi-word command name such as 'SCRIPT LOAD' is split). The worker
    never sends bytearrays or memoryviews, which hiredis refuses (a DataError, as for any other type)."""
    name = args[0]
    # Only a multi-word name is rebuilt: copying a script call's many arguments for nothing was a
    # measurable part of the worker's packing (hiredis takes str and bytes alike).
    if (" " in name) if isinstance(name, str) else (b" " in name):
        args = (*name.split(), *args[1:])
    try:
        return hiredis.pack_command(args)
    except TypeError as exc:
        raise DataError(str(exc)) from None


class _HiredisPacking:
    """Mixin over a redis-py asyncio connection class: hiredis packs, everything else is unchanged."""

    def pack_command(self, *args: Any) -> list[bytes]:
        return [_hiredis_pack(args)]

    def pack_commands(self, commands: Iterable[Iterable[Any]]) -> list[bytes]:
        return [b"".join(_hiredis_pack(tuple(command)) for command in commands)]


@functools.cache
def _packing_class(base: type) -> type:
    return type(f"HiredisPacking{base.__name__}", (_HiredisPacking, base), {})


def pack_with_hiredis(pool: aredis.ConnectionPool) -> None:
    """Have the pool's (not yet opened) connections pack with hiredis, whatever their class (TCP, TLS,
    unix socket, as the URL chose); nothing changes where hiredis is not installed."""
    if hiredis is not None:
        pool.connection_class = _packing_class(pool.connection_class)


Command = tuple[Any, ...]  # one Redis command's arguments, name first
Stage = Callable[[list[Command]], None]  # adds a caller's commands to the batch
Pending = tuple[Stage, "asyncio.Future[list[Any]]"]  # a caller's commands and who waits for their results


class Script:
    """A Lua script called by SHA inside batches (loaded up front, and again if Redis forgot it)."""

    def __init__(self, batcher: RedisBatcher, source: str) -> None:
        self._batcher = batcher
        self.source = source
        self.sha = ""

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        (result,) = await self._batcher.run(lambda commands: self.stage(commands, keys, args))
        return result

    def stage(self, commands: list[Command], keys: Sequence[str], args: Sequence[str | int | float]) -> None:
        commands.append(("EVALSHA", self.sha, len(keys), *keys, *args))


class RedisBatcher:
    """Calls made in the same turn of the event loop go out together on one multiplexed connection
    (:mod:`workers.guest.redis_mux`); ``redis`` stays the client for everything else."""

    def __init__(self, client: aredis.Redis, window_s: float = 0.0) -> None:
        self.redis = client
        self._window_s = window_s
        pool = client.connection_pool
        self._mux = RedisMux(lambda: pool.connection_class(**pool.connection_kwargs))
        self._scripts: list[Script] = []
        self._pending: list[Pending] = []

    def script(self, source: str) -> Script:
        script = Script(self, source)
        self._scripts.append(script)
        return script

    async def load_scripts(self) -> None:
        for script in self._scripts:
            script.sha = await self.redis.script_load(script.source)

    async def aclose(self) -> None:
        await self._mux.aclose()

    async def run(self, stage: Stage) -> list[Any]:
        """Stage commands on the next batch; their results, in order, once it has run."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if not self._pending:
            # The batch goes after everything already runnable (call_soon), so it finds their calls staged.
            if self._window_s > 0:
                loop.call_later(self._window_s, self._flush)
            else:
                loop.call_soon(self._flush)
        self._pending.append((stage, future))
        return await future

    def _flush(self) -> None:
        """Write the batch now; its replies are handed out by a callback (no task per batch)."""
        batch, self._pending = self._pending, []
        try:
            commands, sizes = self._stage(batch)
            replies = self._mux.submit(commands)
        except Exception as exc:
            self._fail(batch, exc)
            return
        replies.add_done_callback(lambda done: self._answer(batch, sizes, done))

    def _answer(self, batch: list[Pending], sizes: list[int], done: asyncio.Future[list[Any]]) -> None:
        if done.cancelled():
            self._fail(batch, RedisConnectionError("the batch was cancelled"))
            return
        error = done.exception()
        if error is not None:
            self._fail(batch, error)  # type: ignore[arg-type]
            return
        flat = done.result()
        if any(isinstance(r, NoScriptError) for r in flat):
            # Redis restarted or flushed its script cache: load them and send the batch again, once.
            task = asyncio.ensure_future(self._reload_and_resend(batch))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
            return
        at = 0
        for (_stage, future), size in zip(batch, sizes, strict=True):
            result, at = flat[at:at + size], at + size
            if future.done():
                continue
            error = next((r for r in result if isinstance(r, Exception)), None)
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    async def _reload_and_resend(self, batch: list[Pending]) -> None:
        try:
            await self.load_scripts()
            commands, sizes = self._stage(batch)
            flat = await self._mux.execute(commands)
            if any(isinstance(r, NoScriptError) for r in flat):
                raise NoScriptError("script cache flushed")
        except Exception as exc:
            self._fail(batch, exc)
            return
        replies: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        replies.set_result(flat)
        self._answer(batch, sizes, replies)

    @staticmethod
    def _stage(batch: list[Pending]) -> tuple[list[Command], list[int]]:
        commands: list[Command] = []
        sizes = []
        for stage, _future in batch:
            before = len(commands)
            stage(commands)
            sizes.append(len(commands) - before)
        return commands, sizes

    @staticmethod
    def _fail(batch: list[Pending], exc: BaseException) -> None:
        for _stage, future in batch:
            if not future.done():
                future.set_exception(exc)
