"""Routing guest commands from ``parley:guest:commands`` to the worker that owns each session.

The ingestion worker appends every guest command to ``parley:guest:commands``
(:class:`~workers.guest.handoff.HandOff`: what routing needs); the body stays in the command record.
One guest worker at a time routes (it holds the routing lease, :mod:`workers.guest.ownership`): it
reads the stream through the consumer group, and for each entry one script
(:meth:`workers.guest.store.SessionStore.route`) appends the command to the session's inbox,
acknowledges the entry and rings the owner's doorbell, atomically (reading as in :mod:`workers.streams`).
So:

* at least once from the stream: an entry is acknowledged only together with its hand-off; a router
  that dies leaves its entries pending, and the next router claims them all before reading new ones;
* in order per session: one router, reading in stream order, appends in that order; the owner works
  through its inbox one command at a time;
* wherever the owner runs: the inbox is in Redis, the doorbell is a stream per worker, and a session
  whose owner is dead is handed to a live worker on the spot (adoption would get there too).

A ``guest.start`` for a session key with no live session creates it, owned by the least busy live
worker. Other commands for an unknown (or ended) session fail at once with an explanation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aredis

from genesys.effects import AsyncRunner
from parley import keys
from schemas.commands import GuestEnd, GuestStart
from schemas.events import CommandResult
from workers.guest import keys as guest_keys
from workers.guest.commands import CommandDesk, UnreadableCommand
from workers.guest.handoff import HandOff
from workers.guest.keys import session_ident
from workers.guest.ownership import Ownership
from workers.guest.settings import GuestSettings
from workers.guest.store import Routed, RouteRequest, SessionStore
from workers.streams import ConsumerGroup, StreamEntry

log = logging.getLogger("parley.guest.routing")
T = TypeVar("T")

NO_SESSION = ("there is no guest session for this session_key: send guest.start first "
              "(the session may also have ended long enough ago to be forgotten)")
ENDED = "the guest session for this session_key has ended; send guest.start to begin a new one"


class Router:
    def __init__(self, client: aredis.Redis, store: SessionStore, desk: CommandDesk, ownership: Ownership,
                 settings: GuestSettings, on_local: Callable[[str], None]) -> None:
        self.redis = client
        self.store = store
        self.desk = desk
        self.ownership = ownership
        self.settings = settings
        self.worker_id = ownership.worker_id
        self._on_local = on_local
        self._loads: dict[str, int] = {}
        self._loads_at = 0.0
        self.source = ConsumerGroup(guest_keys.COMMANDS, settings.consumer_group, self.worker_id, settings.read_batch)
        self._run = AsyncRunner(client).run

    async def ensure_group(self) -> None:
        await self._run(self.source.create())

    async def take_over(self) -> int:
        """On becoming the router: claim every entry a previous router read but never handed on, and
        route them (oldest first) before anything new."""
        entries = await self._run(self.source.claim(idle_ms=0))
        await self.route_batch(entries)
        return len(entries)

    async def run_once(self, block_ms: int | None = None) -> int:
        entries = await self._run(self.source.new(self.settings.read_block_ms if block_ms is None else block_ms))
        await self.route_batch(entries)
        return len(entries)

    async def trim(self, keep_s: int) -> int:
        """Drop routed entries older than ``keep_s`` from the guest commands stream (never a pending one):
        each is in its session's inbox by then, and the stream would otherwise grow by every command."""
        return int(await self._run(self.source.trim(int(time.time() * 1000) - keep_s * 1000)))

    async def route_batch(self, entries: list[StreamEntry]) -> None:
        """Route entries in order, their routing steps in one round trip (in stream order), then answer
        the few that found no live session. An entry names its command's org (and a guest.start its
        protocol), so routing reads no record: the step itself skips a command already ended or gone.
        Entries from an ingestion worker older than that are routed from their records, read first."""
        if not entries:
            return
        records = await self._records([entry for entry in entries if entry.fields.get("org") is None])
        prepared: list[tuple[StreamEntry, RouteRequest]] = []
        for entry in entries:
            if entry.fields.get("org") is not None:
                request = await self._guarded(entry, self._described(entry))
            else:
                request = await self._guarded(entry, self._prepare(entry, records[entry.entry_id]))
            if request is not None:
                prepared.append((entry, request))
        routed = await self.store.route([request for _entry, request in prepared])
        for (entry, request), result in zip(prepared, routed, strict=True):
            await self._guarded(entry, self._answer(entry, request, result))

    async def _records(self, entries: list[StreamEntry]) -> dict[str, dict[str, str]]:
        if not entries:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.hgetall(keys.command(entry.fields.get("command_id", "")))
            return {entry.entry_id: fields for entry, fields in zip(entries, await pipe.execute(), strict=True)}

    async def _guarded(self, entry: StreamEntry, step: Awaitable[T]) -> T | None:
        try:
            return await step
        except aredis.RedisError:
            raise  # the entry stays pending; the router loop claims it again after reconnecting
        except Exception:
            # A bug must not wedge routing: end the command as failed (a dead letter) and move on.
            log.exception("could not route guest command entry %s", entry.entry_id)
            record = await self.desk.record(entry.fields.get("command_id", ""))
            if record is not None and not record.state.terminal:
                await self.desk.fail(record, "the guest worker could not route this command (internal error)")
            await self._ack(entry)
            return None

    async def _described(self, entry: StreamEntry) -> RouteRequest:
        """The routing step for an entry that says everything routing needs (the ingestion worker's)."""
        hand_off = HandOff.model_validate(entry.fields)
        assert hand_off.org is not None
        return await self._request(entry, hand_off.command_id, hand_off.type, hand_off.org, hand_off.session_key,
                                   hand_off.protocol)

    async def _prepare(self, entry: StreamEntry, fields: dict[str, str]) -> RouteRequest | None:
        """The routing step for an entry from its command record, or None when it was answered here (no
        record, finished, bad)."""
        loaded = None
        try:
            loaded = self.desk.parse(fields)
        except UnreadableCommand as exc:
            await self.desk.fail(exc.record, f"command body unreadable: {exc}")
        if loaded is None or loaded.record.state.terminal:
            if loaded is None:
                log.warning("guest command entry %s has no readable command record; acknowledged", entry.entry_id)
            await self._ack(entry)
            return None
        record, command = loaded.record, loaded.command
        session_key = command.targets.get("session_key")
        if session_key is None:
            await self.desk.fail(record, f"{command.type} is not a guest command")
            await self._ack(entry)
            return None
        protocol = command.protocol.value if isinstance(command, GuestStart) else ""
        return await self._request(entry, record.command_id, command.type, record.org, session_key, protocol)

    async def _request(self, entry: StreamEntry, command_id: str, command_type: str, org: str, session_key: str,
                       protocol: str) -> RouteRequest:
        return RouteRequest(
            ident=session_ident(org, session_key), chosen=await self._choose_owner(), me=self.worker_id,
            command_id=command_id, command_type=command_type, group=self.settings.consumer_group,
            entry_id=entry.entry_id, session_key=session_key, org=org, protocol=protocol,
            ttl_s=self.settings.session_ttl_s)

    async def _answer(self, entry: StreamEntry, request: RouteRequest, routed: Routed) -> None:
        match routed.outcome:
            case "routed":
                if routed.owner == self.worker_id:
                    self._on_local(request.ident)
                return
            case "finished":
                return  # ended while it waited (expired): nothing to route; the step acknowledged it
            case "gone":
                log.warning("guest command entry %s has no command record; acknowledged", entry.entry_id)
                return
        # No live session: answer now (the entry stays pending until it is answered, then acked).
        try:
            loaded = await self.desk.load(request.command_id)
        except UnreadableCommand as exc:
            await self.desk.fail(exc.record, f"command body unreadable: {exc}")
            loaded = None
        if loaded is not None and not loaded.record.state.terminal:
            if isinstance(loaded.command, GuestEnd) and routed.outcome == "ended":
                await self.desk.succeed(loaded.record, CommandResult(final_state="ended", already_ended=True))
            else:
                await self.desk.fail(loaded.record, ENDED if routed.outcome == "ended" else NO_SESSION)
        await self._ack(entry)

    async def _ack(self, entry: StreamEntry) -> None:
        await self.redis.xack(guest_keys.COMMANDS, self.settings.consumer_group, entry.entry_id)

    async def _choose_owner(self) -> str:
        """The live worker with the fewest sessions (refreshed every few seconds, counted locally between)."""
        now = time.monotonic()
        if now - self._loads_at >= self.settings.adopt_every_s:
            self._loads = {w.worker_id: w.sessions for w in await self.ownership.loads()}
            self._loads_at = now
        if not self._loads:
            return self.worker_id
        chosen = min(self._loads, key=lambda w: (self._loads[w], w != self.worker_id))
        self._loads[chosen] += 1
        return chosen
