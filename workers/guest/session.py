"""One guest session on one worker: the thin I/O driver around two sans-I/O units.

As python-websockets' asyncio connection is to its protocol object, :class:`SessionRunner` is to
the session's two machines: the protocol machine (:mod:`guest.webmessaging`, :mod:`guest.guestchat`)
speaks to Genesys, the command lifecycle (:mod:`workers.guest.lifecycle`) takes, settles and ends
the session's commands and says what to relay. The runner owns the socket, the REST calls, the timer,
the queue and the Redis steps. Everything that happens to the session (a frame, a closed socket, a
REST answer, a timer, new commands, a command step's answer) becomes one input on the runner's
queue, handled in order by one task, so neither unit ever sees two inputs at once. After each input
the runner carries out the lifecycle's effects, then drains the machine's outputs (frames, then
intents, then events, which go to the lifecycle, whose effects are carried out in turn) until neither
has anything left to say, and sleeps until the next input or the earlier of their deadlines.

Relays (agent messages, joins, typing, the end) go on the session's relay lane
(:mod:`workers.guest.relay`), in order among themselves, without waiting behind the command path's
Redis calls; a new session's lane is held until its ``guest.started`` is written.

Commands are taken from the session's inbox one at a time (:meth:`workers.guest.store.SessionStore.take`,
which also records the previous command's ending and marks the taken one running, in one script,
off the input path: see :meth:`SessionRunner._launch_step`). What each command waits for is the
lifecycle's business (its module docstring has the table).

Exactly once across workers. Before a message is handed to the machine the session record says so
(``handed``). An adopter that finds a handed, unfinished message does not send it blind: it waits for
the machine's history backfill after resuming, looks for the message there, and sends it only if it is
absent. Agent messages, joins and the end are appended with their ids to a Redis set in the same
script (:meth:`~workers.guest.store.SessionStore.relay`), so a message the new machine sees again is
still one event.

Logs name a session by the first characters of its hash and never carry text, tokens or URIs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import websockets
from pydantic import ValidationError

from genesys.errors import GenesysError, GenesysTransportError
from guest.events import CloseSocket, Intent, OpenSocket
from guest.guestchat import ChatRequest
from guest.webmessaging import FetchMessageHistory
from parley import logs, metrics, tracing
from parley.state_cache import GuestKey, GuestSession, StateCache
from schemas.commands import GuestEnd, GuestStart
from schemas.events import CommandResult, EventBase, GuestEnded
from workers.guest.adapters import ProtocolAdapter, build_adapter
from workers.guest.budget import ConnectionBudget, Ticket
from workers.guest.commands import CommandDesk, UnreadableCommand, Words
from workers.guest.lifecycle import (
    Checkpoint,
    CommandLifecycle,
    End,
    EndedBy,
    Ending,
    HoldRelays,
    Live,
    MarkHanded,
    Relay,
    Retrying,
    SessionFacts,
    Succeeded,
    Take,
)
from workers.guest.lifecycle import rejection_details as rejection_details  # where callers found it
from workers.guest.network import Connection, ConnectRefused, RestIntent, SessionIO
from workers.guest.relay import RelayLane
from workers.guest.settings import GuestSettings
from workers.guest.store import SessionRecord, SessionStatus, SessionStore, Taken

log = logging.getLogger("parley.guest.session")

MIN_WAIT_S = 0.002  # never spin on a deadline that is already due
CLOSE_REASON_BYTES = 120  # websocket close reasons are limited to 123 bytes


@dataclass(frozen=True)
class RunnerContext:
    """What every runner of a worker shares."""

    worker_id: str
    store: SessionStore
    desk: CommandDesk
    io: SessionIO
    settings: GuestSettings
    cache: StateCache
    org_io: Callable[[str], SessionIO] | None = None
    """The I/O of an org's sessions (its region's endpoints); None: ``io`` serves every org (tests)."""
    budget: ConnectionBudget | None = None
    """The fleet's connection budget, which every socket waits for; None: sockets open at once (tests)."""

    def io_for(self, org: str) -> SessionIO:
        return self.io if self.org_io is None else self.org_io(org)


# --- inputs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Poke:
    """New commands may be waiting in the inbox."""


@dataclass(frozen=True)
class _Tick:
    """A deadline (the machine's or the lifecycle's) is due."""


@dataclass(frozen=True)
class _Stop:
    handover: bool  # True: keep the session for an adopter (checkpoint saved); False: just stop


@dataclass(frozen=True)
class _Opened:
    gen: int
    conn: Connection


@dataclass(frozen=True)
class _Lost:
    gen: int
    http_status: int | None = None


@dataclass(frozen=True)
class _Frame:
    gen: int
    data: str | bytes


@dataclass(frozen=True)
class _LaneFailed:
    """The relay lane's write failed (Redis, or fenced): the runner fails as if it had made it."""

    error: Exception


@dataclass(frozen=True)
class _Stepped:
    """A command step (record the previous command's ending, take the next) came back from Redis."""

    task: asyncio.Task[Taken]


@dataclass(frozen=True)
class _RestDone:
    intent: RestIntent
    body: str | None
    error: GenesysError | GenesysTransportError | None


_Input = _Poke | _Tick | _Stop | _Opened | _Lost | _Frame | _RestDone | _LaneFailed | _Stepped
_POKE, _TICK = _Poke(), _Tick()


class _Fenced(Exception):
    """The session's token changed: another worker owns it now."""


@dataclass
class _Links:
    """The socket generation and the tasks in flight."""

    gen: int = 0
    conn: Connection | None = None
    lost_reported: bool = True
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


async def settle_leftovers(store: SessionStore, desk: CommandDesk, ident: str, token: str, reason: str) -> None:
    """End every command still waiting on a session that has ended: guest.end succeeds, others fail."""
    finished = ""
    while True:
        taken = await store.take(ident, token, finished=finished)
        if taken.outcome not in ("taken", "busy"):
            return
        finished = taken.command_id
        try:
            loaded = desk.parse(taken.record)
        except UnreadableCommand as exc:
            await desk.fail(exc.record, f"command body unreadable: {exc}")
            continue
        if loaded is not None and not loaded.record.state.terminal:
            if isinstance(loaded.command, GuestEnd):
                await desk.succeed(loaded.record, CommandResult(final_state="ended", already_ended=True))
            else:
                await desk.fail(loaded.record, reason)


class SessionRunner:
    def __init__(self, ident: str, ctx: RunnerContext, on_exit: Callable[[str], None]) -> None:
        self.ident = ident
        self.short = ident[:10]
        self._ctx = ctx
        self._on_exit = on_exit
        self._queue: asyncio.Queue[_Input] = asyncio.Queue()
        self._poked = False
        self._record: SessionRecord | None = None  # as loaded when the runner opened
        self._token = ""
        self._adapter: ProtocolAdapter | None = None
        self._lifecycle: CommandLifecycle | None = None  # both exist once the session is open
        self._links = _Links()
        self._lane = RelayLane(self._write_relayed, self._write_checkpoint,
                               lambda exc: self._queue.put_nowait(_LaneFailed(exc)))
        self._step: asyncio.Task[Taken] | None = None  # a command step in flight (see _launch_step)
        self._just_ticked = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._ticket: Ticket | None = None  # waiting for the connection budget
        self.task: asyncio.Task[None] | None = None
        self.failed = False

    # --- control (called by the worker) ----------------------------------------------------------------

    def launch(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self.run(), name=f"guest-session-{self.short}")
        return self.task

    def poke(self) -> None:
        if self._ticket is not None:
            self._ticket.promote()  # a command waits: open ahead of idle sessions
        if not self._poked:
            self._poked = True
            self._queue.put_nowait(_POKE)

    def stop(self, *, handover: bool) -> None:
        self._queue.put_nowait(_Stop(handover))

    # --- the loop -------------------------------------------------------------------------------------

    async def run(self) -> None:
        logs.bind(session=self.short)  # this task's context: every line of the session, its child tasks too
        try:
            if await self._open():
                await self._loop()
        except _Fenced:
            log.warning("session %s: owned by another worker now; letting go", self.short)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Redis unavailable, or a bug: this must not take the worker down; the worker starts a fresh
            # runner for the session shortly (see GuestWorker._runner_exited).
            self.failed = True
            log.exception("session %s: runner failed", self.short)
        finally:
            await self._teardown()
            self._on_exit(self.ident)

    async def _loop(self) -> None:
        lifecycle = self._require_lifecycle()
        while not lifecycle.finished:
            item = await self._next_input()
            if isinstance(item, _Stop):
                await self._stop(item.handover)
                return
            now = time.time()
            await self._handle(item, now)
            await self._carry_out(now)
            await self._drain(now)
            if lifecycle.waits_for_history_end and not self._require_adapter().machine.backfilling:
                # The backfill is over (not merely between a failed page and its retry: chaos finding,
                # a Guest Chat first message sent twice) and our message was not in it.
                lifecycle.history_over(now)
                await self._carry_out(now)
                await self._drain(now)

    async def _next_input(self) -> _Input:
        deadline, now = self._deadline(), time.time()
        # A due deadline goes first once, so a busy socket cannot starve the timers; then the queue.
        if deadline is not None and deadline <= now and not self._just_ticked:
            self._just_ticked = True
            return _TICK
        self._just_ticked = False
        if self._queue.empty():
            self._arm_timer(deadline, now)
        return await self._queue.get()

    def _arm_timer(self, deadline: float | None, now: float) -> None:
        """Have a _Tick queued at ``deadline``; the handle is kept while the deadline stays the same, so
        thousands of sleeping sessions cost no timer churn."""
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(loop.time() + max(MIN_WAIT_S, deadline - now), self._tick)

    def _tick(self) -> None:
        self._timer, self._timer_at = None, None
        self._queue.put_nowait(_TICK)

    def _deadline(self) -> float | None:
        # Asked before every input: kept to plain comparisons.
        deadline = self._adapter.machine.next_deadline() if self._adapter is not None else None
        settle = self._lifecycle.next_deadline() if self._lifecycle is not None else None
        if settle is not None and (deadline is None or settle < deadline):
            return settle
        return deadline

    async def _handle(self, item: _Input, now: float) -> None:
        adapter, lifecycle = self._require_adapter(), self._require_lifecycle()
        machine, links = adapter.machine, self._links
        match item:
            case _Tick():
                machine.timer(now)
                lifecycle.timer(now)
            case _Poke():
                self._poked = False
                lifecycle.poke()
            case _Stepped():
                await self._stepped(item, now)
            case _Opened(gen=gen, conn=conn):
                if gen != links.gen or lifecycle.finished:
                    self._spawn(self._close(conn, 1000, "superseded"))
                    return
                links.conn, links.lost_reported = conn, False
                machine.connection_made(now)
                conn.start(lambda data: self._queue.put_nowait(_Frame(gen, data)),
                           lambda: self._queue.put_nowait(_Lost(gen)))
            case _Lost(gen=gen, http_status=status):
                if gen == links.gen and not links.lost_reported:
                    links.lost_reported, links.conn = True, None
                    adapter.connection_lost(now, status)
            case _Frame(gen=gen, data=data):
                if gen == links.gen:
                    machine.receive_text(data, now)
            case _RestDone():
                await self._rest_done(item, now)
            case _LaneFailed(error=error):
                raise error

    async def _drain(self, now: float) -> None:
        """Carry out everything the machine asks, in its order, until it is quiet; its events go to the
        lifecycle, whose effects are carried out before the next frame goes."""
        adapter, lifecycle = self._require_adapter(), self._require_lifecycle()
        while True:
            frames = adapter.frames()
            for frame in frames:
                with tracing.frame(lifecycle.traceparent):
                    await self._send(frame)
            intents = adapter.machine.intents_to_run()
            with tracing.joined(lifecycle.traceparent):  # its REST calls join the command's trace
                for intent in intents:
                    self._dispatch(intent)
            events = adapter.machine.events_received()
            for event in events:
                lifecycle.event(event, now)
            await self._carry_out(now)
            if not (frames or intents or events):
                return

    async def _carry_out(self, now: float) -> None:
        """The lifecycle's effects, in its order: the Redis steps, the relay lane."""
        for effect in self._require_lifecycle().effects_to_run():
            match effect:
                case Relay(events=events):
                    self._lane.put(events)
                case Take(finished=finished, ending=ending, fields=fields):
                    self._launch_step(finished, self._words(ending), **fields)
                case MarkHanded():
                    if not await self._ctx.store.update(self.ident, self._token, handed=1):
                        raise _Fenced
                case HoldRelays():
                    self._lane.hold()  # agent events wait for guest.started, which ending the start writes
                case Checkpoint():
                    checkpoint = self._require_adapter().checkpoint()
                    if checkpoint is not None:
                        self._lane.checkpoint(checkpoint)
                case Retrying(record=record, delay_s=delay_s, reason=reason):
                    metrics.retry(record.type, "rate_limited")
                    await self._ctx.desk.retrying(record, record.attempts, delay_s, reason)
                case Live():
                    await self._session_live(now)
                case End(by=by, reason=reason, ending=ending):
                    await self._terminal(by, reason, ending)

    # --- opening and closing ----------------------------------------------------------------------------

    async def _open(self) -> bool:
        ctx = self._ctx
        record = await ctx.store.load(self.ident)
        if record is None or record.owner != ctx.worker_id:
            return False
        self._record, self._token = record, record.token
        logs.bind(session_key=record.session_key, org=record.org)
        if record.status is SessionStatus.ended:
            await settle_leftovers(ctx.store, ctx.desk, self.ident, self._token, "the guest session has ended")
            return False
        try:
            loaded = await ctx.desk.load(record.start_command_id)
        except UnreadableCommand:
            loaded = None
        if loaded is None or not isinstance(loaded.command, GuestStart):
            await self._terminal("system", "the session's guest.start command is no longer stored")
            return False
        secret = await ctx.store.get_secret(self.ident)
        if record.status is SessionStatus.live and secret is None:
            await self._terminal("system", "the session's resume credentials expired")
            return False
        settings = ctx.settings
        adapter = build_adapter(loaded.command, secret, record, settings, ctx.io_for(record.org).api_url)
        if adapter.needs_saving and adapter.secret is not None:
            await ctx.store.put_secret(self.ident, adapter.secret, settings.session_ttl_s)
        now = time.time()
        facts = SessionFacts(label=self.short, session_key=record.session_key, org=record.org,
                             protocol=record.protocol, start_command_id=record.start_command_id,
                             last_own_id=record.last_own_id, settle_timeout_s=settings.reconcile_timeout_s,
                             clock_slack_s=settings.history_clock_slack_s,
                             checkpoint_every_s=settings.checkpoint_every_s, idle_end_s=settings.idle_end_s)
        self._adapter = adapter
        self._lifecycle = lifecycle = CommandLifecycle(facts, adapter.machine, lambda: adapter.ids()[0], now)
        log.info("session %s: %s %s (%s)", self.short, "resuming" if adapter.resuming else "starting",
                 adapter.protocol, record.status.value)
        adapter.start(now)
        lifecycle.poke()
        await self._carry_out(now)
        await self._take_before_connecting(now)
        await self._drain(now)
        return True

    async def _stop(self, handover: bool) -> None:
        # A command taken by a step in flight stays current and handed: the adopter settles it.
        await self._settle_step()
        await self._lane.flush()  # what was relayed is in Redis before the checkpoint says so
        lifecycle = self._lifecycle
        if handover and lifecycle is not None and not lifecycle.finished:
            checkpoint = self._require_adapter().checkpoint()
            if checkpoint is not None:
                await self._ctx.store.update(self.ident, self._token, checkpoint=checkpoint)
        conn, self._links.conn = self._links.conn, None
        if conn is not None:
            await self._close(conn, 1001, "worker handing the session over")

    async def _teardown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._lane.cancel()  # only a failed or fenced runner gets here with writes queued
        links = self._links
        tasks = [t for t in (self._step, *links.tasks) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        conn, links.conn = links.conn, None
        if conn is not None:
            await self._close(conn, 1000, "session over")

    async def _terminal(self, by: EndedBy, reason: str, ending: Ending | None = None) -> None:
        """The session is over: the end event, the command in hand's ending, the record, what is still queued."""
        ctx = self._ctx
        await self._settle_step()  # a start's ending (guest.started) goes before guest.ended
        log.info("session %s: ended by %s (%s)", self.short, by, reason)
        self._lane.put([("ended", GuestEnded(**self._about(), by=by, reason=reason))])
        await self._lane.flush()
        if ending is not None:
            # Recorded and waited for: what follows, the session's end, must not overtake it.
            if not await ctx.store.finish(self.ident, self._token, ending.record.command_id,
                                          ending=self._words(ending)):
                raise _Fenced
            self._lane.release()
        record = self._record
        if record is not None:
            await ctx.store.end(self.ident, self._token, by, ctx.settings.ended_retention_s)
            await ctx.desk.run_sync(ctx.cache.invalidate_guest, GuestKey(org=record.org,
                                                                          session_key=record.session_key))
        await settle_leftovers(ctx.store, ctx.desk, self.ident, self._token, f"the guest session has ended ({reason})")

    # --- command steps ----------------------------------------------------------------------------------

    def _launch_step(self, finished: str = "", ending: Words = (), **fields: str) -> None:
        """Record ``finished``'s ending and take the next command, in one script, off the input path.

        The runner goes on handling inputs while the step is in Redis: the guest's echo and the agent's
        answer arrive back to back, and an agent message that waited for the command path's round trip
        waited for a busy Redis (measured: most of the relay tail at ten thousand sessions)."""
        assert self._step is None, "one command step at a time"
        step = asyncio.create_task(self._ctx.store.take(self.ident, self._token, finished=finished, ending=ending,
                                                        begin=True, **fields))
        step.add_done_callback(lambda task: self._queue.put_nowait(_Stepped(task)) if not task.cancelled() else None)
        self._step = step

    async def _take_before_connecting(self, now: float) -> None:
        """At open, unlike later, the first command is waited for before the socket opens (the machine's
        socket request goes out with the first drain): a guest.start must hold the relay lane before any
        agent event arrives, and a message an adopted session may already have sent must be known
        before the resumed session's history backfill, which settles it, comes in."""
        lifecycle = self._require_lifecycle()
        while self._step is not None and not lifecycle.in_hand:
            step = self._step
            await asyncio.wait([step])
            await self._stepped(_Stepped(step), now)
            await self._carry_out(now)

    async def _settle_step(self) -> None:
        """Wait for the step in flight without acting on what it took (ending or handing over)."""
        step, self._step = self._step, None
        if step is not None and (await step).outcome == "lost":
            raise _Fenced

    async def _stepped(self, item: _Stepped, now: float) -> None:
        if item.task is not self._step:
            return  # already settled by _terminal or _stop
        self._step = None
        taken = item.task.result()  # raises what the step raised: the runner fails as it would have inline
        self._lane.release()  # held only until guest.started (written with a start's ending) is in Redis
        if taken.outcome == "lost":
            raise _Fenced
        lifecycle = self._require_lifecycle()
        if taken.outcome not in ("taken", "busy"):
            lifecycle.took_nothing()
            return
        desk = self._ctx.desk
        try:
            loaded = desk.parse(taken.record)
        except UnreadableCommand as exc:
            await desk.fail(exc.record, f"command body unreadable: {exc}")
            loaded = None
        # A previous owner's current command, which it may already have sent (the take marked the record
        # running, begin=True, so it reads as it now is in Redis).
        record = self._record
        handed = taken.outcome == "busy" and record is not None and record.handed
        lifecycle.took(taken.command_id, loaded, now, sent_since=record.taken_at if handed and record else None)

    def _words(self, ending: Ending | None) -> Words:
        desk = self._ctx.desk
        if ending is None:
            return ()
        if isinstance(ending, Succeeded):
            return desk.succeeded(ending.record, ending.result, *ending.extra)
        return desk.failed(ending.record, ending.reason, ending.error, ending.hint)

    # --- Redis writes -----------------------------------------------------------------------------------

    async def _session_live(self, now: float) -> None:
        ctx, adapter, record = self._ctx, self._require_adapter(), self._record
        if record is not None and record.status is SessionStatus.starting:
            conversation_id, member_id = adapter.ids()
            ids = {k: v for k, v in (("conversation_id", conversation_id), ("member_id", member_id)) if v}
            if not await ctx.store.update(self.ident, self._token, status=SessionStatus.live.value, **ids):
                raise _Fenced
            cached = GuestSession(protocol=adapter.protocol, deployment_id=adapter.deployment_id,  # type: ignore[arg-type]
                                  conversation_id=conversation_id, member_id=member_id)
            await ctx.desk.run_sync(ctx.cache.put_guest, GuestKey(org=record.org, session_key=record.session_key),
                                    cached)
        await self._save_secret_ttl(now)

    async def _write_relayed(self, events: list[tuple[str, EventBase]]) -> None:
        await self._ctx.store.relay(self.ident, events, self._ctx.settings.session_ttl_s)

    async def _write_checkpoint(self, checkpoint: str) -> None:
        if not await self._ctx.store.update(self.ident, self._token, checkpoint=checkpoint):
            raise _Fenced

    async def _save_secret_ttl(self, now: float) -> None:
        """Keep the secret (and the session's keys) exactly as long as Genesys keeps the session."""
        adapter, settings = self._require_adapter(), self._ctx.settings
        expires = adapter.expires_at()
        ttl = expires - now if expires is not None and expires > now else settings.session_ttl_s
        if adapter.secret is not None:
            await self._ctx.store.put_secret(self.ident, adapter.secret, ttl)
        await self._ctx.store.touch(self.ident, max(ttl, settings.session_ttl_s))

    # --- I/O --------------------------------------------------------------------------------------------

    def _dispatch(self, intent: Intent) -> None:
        links = self._links
        match intent:
            case OpenSocket():
                links.gen += 1
                if links.gen > 1:
                    metrics.guest_reconnects.labels(protocol=self._require_adapter().protocol).inc()
                links.lost_reported = False
                if links.conn is not None:
                    self._spawn(self._close(links.conn, 1000, "reconnecting"))
                    links.conn = None
                uri, origin = self._require_adapter().socket_target(intent)
                self._spawn(self._connect(links.gen, uri, origin))
            case CloseSocket(code=code, reason=reason):
                conn, links.conn = links.conn, None
                if conn is not None:
                    self._spawn(self._close(conn, code, reason, report_gen=links.gen))
            case FetchMessageHistory() | ChatRequest():
                self._spawn(self._rest(intent))  # type: ignore[arg-type]
            case _:
                log.warning("session %s: unknown intent %s", self.short, type(intent).__name__)

    async def _connect(self, gen: int, uri: str, origin: str | None) -> None:
        await self._wait_for_budget()
        try:
            conn = await self._ctx.io.connect(uri, origin)
        except ConnectRefused as exc:
            log.warning("session %s: websocket refused (HTTP %d)", self.short, exc.status)
            self._queue.put_nowait(_Lost(gen, exc.status))
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
            log.info("session %s: websocket did not open (%s)", self.short, type(exc).__name__)
            self._queue.put_nowait(_Lost(gen))
        else:
            self._queue.put_nowait(_Opened(gen, conn))

    async def _wait_for_budget(self) -> None:
        """Take a slot of the deployment's connection budget (:mod:`workers.guest.budget`), a session with
        a command in hand or waiting ahead of the rest; the runner goes on handling inputs meanwhile."""
        budget = self._ctx.budget
        if budget is None:
            return
        urgent = self._poked or self._require_lifecycle().in_hand
        ticket = self._ticket = budget.ticket(self._org, self._require_adapter().deployment_id, urgent=urgent)
        try:
            await ticket.wait()
        finally:
            if self._ticket is ticket:
                self._ticket = None

    async def _send(self, frame: str) -> None:
        conn = self._links.conn
        if conn is None:
            return  # the machine hears of the loss through _Lost and resends what matters
        with contextlib.suppress(websockets.exceptions.ConnectionClosed, OSError):
            await conn.send(frame)  # on failure the socket reports the loss (its on_closed)

    async def _close(self, conn: Connection, code: int, reason: str, *, report_gen: int | None = None) -> None:
        with contextlib.suppress(Exception):
            await conn.close(code, reason.encode()[:CLOSE_REASON_BYTES].decode(errors="ignore"))
        if report_gen is not None:
            self._queue.put_nowait(_Lost(report_gen))

    async def _rest(self, intent: RestIntent) -> None:
        try:
            body = await self._ctx.io_for(self._org).rest(intent)
        except (GenesysError, GenesysTransportError) as exc:
            self._queue.put_nowait(_RestDone(intent, None, exc))
        else:
            self._queue.put_nowait(_RestDone(intent, body, None))

    async def _rest_done(self, item: _RestDone, now: float) -> None:
        adapter, lifecycle, ctx = self._require_adapter(), self._require_lifecycle(), self._ctx
        intent = item.intent
        history = adapter.is_history(intent)  # type: ignore[arg-type]
        request_id: str = intent.request_id  # type: ignore[attr-defined]
        if item.error is not None:
            if isinstance(item.error, GenesysError):
                log.info("session %s: %s %s -> %d %s", self.short, intent.method, type(intent).__name__,
                         item.error.status, item.error.code)
            if history:
                lifecycle.history_answered(None, now)
            adapter.machine.rest_failed(request_id, now, item.error)
            return
        secret = adapter.secret_from_answer(intent, item.body)  # type: ignore[arg-type]
        if secret is not None:
            # Saved before the machine acts on it: from here on another worker can resume this chat.
            expires = adapter.expires_at()
            await ctx.store.put_secret(self.ident, secret, expires - now if expires else ctx.settings.session_ttl_s)
        sought = lifecycle.sought
        if history and sought is not None:
            lifecycle.history_answered(adapter.find_own(item.body, sought), now)
            await self._carry_out(now)
        try:
            adapter.machine.rest_succeeded(request_id, now, item.body)  # type: ignore[arg-type]
        except ValidationError:
            log.warning("session %s: unreadable answer to %s", self.short, type(intent).__name__)

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._links.tasks.add(task)
        task.add_done_callback(self._links.tasks.discard)

    # --- small helpers ----------------------------------------------------------------------------------

    def _require_adapter(self) -> ProtocolAdapter:
        assert self._adapter is not None, "the session is not open"
        return self._adapter

    @property
    def _org(self) -> str:
        assert self._record is not None, "the session is not open"
        return self._record.org

    def _require_lifecycle(self) -> CommandLifecycle:
        assert self._lifecycle is not None, "the session is not open"
        return self._lifecycle

    def _about(self) -> dict[str, str]:
        assert self._record is not None
        return {"session_key": self._record.session_key, "org": self._record.org}
