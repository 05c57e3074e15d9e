"""One guest session on one worker: the thin I/O driver around a sans-I/O guest machine.

Like python-websockets' asyncio layer around its protocol objects, :class:`SessionRunner` owns the
socket, the REST calls, the timer and the session's commands; the machine (``guest.webmessaging`` or
``guest.guestchat``) owns the protocol. Everything that happens to the session (a frame, a closed
socket, a REST answer, a timer, new commands) becomes one input on the runner's queue, handled in
order by one task, so the machine never sees two inputs at once. After each input the runner drains
the machine's outputs (frames, then intents, then events) until it has nothing left to say, and sleeps
until the next input or ``next_deadline()``.

Relays (agent messages, joins, typing, the end) are the exception among the writes: they go on the
session's relay lane (:mod:`workers.guest.relay`), in order among themselves, without waiting behind
the command path's Redis calls; a new session's lane is held until its ``guest.started`` is written.

Commands are taken from the session's inbox one at a time (:meth:`workers.guest.store.SessionStore.take`,
which also records the previous command's ending and marks the taken one running, in one script):

* ``guest.start`` (the one that created the session) succeeds once the machine says the session is
  started, and its ``first_message`` is confirmed if it has one; ``command.succeeded`` and
  ``guest.started`` are written together. Another ``guest.start`` for a live session attaches to it:
  it succeeds with ``reused`` and ``guest.started`` with ``resumed=true``; no second Genesys session.
* ``guest.send`` succeeds when the machine confirms the message (the echo carrying its tracingId, or
  the REST 200) and fails with the rejection's code and hint otherwise.
* ``guest.typing`` succeeds at once (best effort; skipped while throttled).
* ``guest.end`` succeeds when the session has ended.

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
from datetime import UTC, datetime
from typing import Literal, Protocol

import websockets
from pydantic import ValidationError

from genesys.errors import GenesysError, GenesysTransportError
from guest.events import (
    AgentJoined,
    AgentMessage,
    AgentTyping,
    CloseSocket,
    ConnectionClosed,
    ConversationDisconnected,
    Ended,
    GuestEvent,
    GuestMessageConfirmed,
    Intent,
    MessageRejected,
    OpenSocket,
    ProtocolError,
    RateLimited,
    Reconnecting,
    SessionExpired,
    SessionStarted,
)
from guest.guestchat import ChatRequest, GuestChatSession
from guest.ownmessage import OwnMessage
from guest.webmessaging import FetchMessageHistory, WebMessagingSession
from parley.hints import specific_hint, status_hint, webmessaging_hint_for
from parley.outcomes import about
from parley.records import CommandRecord
from parley.state_cache import GuestKey, GuestSession, StateCache
from schemas.commands import Command, GuestEnd, GuestSend, GuestStart, GuestTyping
from schemas.events import (
    CommandResult,
    EventBase,
    GenesysErrorInfo,
    GuestAgentJoined,
    GuestEnded,
    GuestMessage,
    GuestStarted,
    GuestTypingEvent,
)
from workers.guest.commands import CommandDesk, UnreadableCommand, Words
from workers.guest.guestchat import GuestChatAdapter
from workers.guest.network import Connection, ConnectRefused, RestIntent, SessionIO
from workers.guest.relay import RelayLane
from workers.guest.settings import GuestSettings
from workers.guest.store import SessionRecord, SessionSecret, SessionStatus, SessionStore, Taken
from workers.guest.webmessaging import WebMessagingAdapter

log = logging.getLogger("parley.guest.session")

EndedBy = Literal["guest", "agent", "system"]
MIN_WAIT_S = 0.002  # never spin on a deadline that is already due
CLOSE_REASON_BYTES = 120  # websocket close reasons are limited to 123 bytes


class ProtocolAdapter(Protocol):
    """What differs between the two guest protocols (:mod:`workers.guest.webmessaging`,
    :mod:`workers.guest.guestchat`)."""

    protocol: str
    machine: WebMessagingSession | GuestChatSession
    secret: SessionSecret | None
    needs_saving: bool
    resuming: bool

    def start(self, now: float) -> None: ...

    def frames(self) -> list[str]: ...

    def connection_lost(self, now: float, http_status: int | None) -> None: ...

    def socket_target(self, intent: OpenSocket) -> tuple[str, str | None]: ...

    def secret_from_answer(self, intent: Intent, body: str | None) -> SessionSecret | None: ...

    def is_history(self, intent: Intent) -> bool: ...

    def find_own(self, body: str | None, sought: OwnMessage) -> str | None: ...

    def checkpoint(self) -> str | None: ...

    def expires_at(self) -> float | None: ...

    def ids(self) -> tuple[str | None, str | None]: ...


def build_adapter(start: GuestStart, secret: SessionSecret | None, record: SessionRecord,
                  settings: GuestSettings, api_url: str) -> ProtocolAdapter:
    if start.protocol.value == "guestchat":
        return GuestChatAdapter(start, secret, settings)
    return WebMessagingAdapter(start, secret, record.checkpoint, settings, api_url)


@dataclass(frozen=True)
class RunnerContext:
    """What every runner of a worker shares."""

    worker_id: str
    store: SessionStore
    desk: CommandDesk
    io: SessionIO
    settings: GuestSettings
    cache: StateCache


# --- inputs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Poke:
    """New commands may be waiting in the inbox."""


@dataclass(frozen=True)
class _Tick:
    """A machine (or reconcile) deadline is due."""


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
class _InHand:
    record: CommandRecord
    command: Command
    kind: Literal["start", "first", "attach", "send", "typing", "end"]
    adopted: bool = False  # a previous owner took it; it may already be on the wire
    tracing_id: str | None = None


@dataclass
class _Reconcile:
    """A message a previous owner may have sent: settle it from history before sending it again."""

    text: str
    sought: OwnMessage
    deadline: float
    history_answered: bool = False


@dataclass
class _Links:
    """The socket generation and the tasks in flight."""

    gen: int = 0
    conn: Connection | None = None
    lost_reported: bool = True
    reader: asyncio.Task[None] | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    history_in_flight: int = 0


def rejection_details(protocol: str, code: int | str | None, reason: str) -> tuple[GenesysErrorInfo, str | None]:
    """A machine's rejection code as Genesys error fields plus Parley's hint."""
    if isinstance(code, int):
        status = code if code < 600 else None
        hint = webmessaging_hint_for(code) if protocol == "webmessaging" else status_hint(code)
        return GenesysErrorInfo(status=status, code=str(code), message=reason), hint
    if code:
        return GenesysErrorInfo(code=code, message=reason), specific_hint(code)
    return GenesysErrorInfo(message=reason), None


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
        self._record: SessionRecord | None = None
        self._token = ""
        self._start: GuestStart | None = None
        self._adapter: ProtocolAdapter | None = None
        self._links = _Links()
        self._lane = RelayLane(self._write_relayed, self._write_checkpoint,
                               lambda exc: self._queue.put_nowait(_LaneFailed(exc)))
        self._in_hand: _InHand | None = None
        self._step: asyncio.Task[Taken] | None = None  # a command step in flight (see _launch_step)
        self._repoll = False  # poked while a step was in flight: take again if it found nothing
        self._reconcile: _Reconcile | None = None
        self._started = False
        self._ending = False
        self._agent_ended = False
        self._finished = False
        self._joined_announced = False
        self._last_own_id: str | None = None
        self._checkpoint_at = 0.0
        self._just_ticked = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.failed = False

    # --- control (called by the worker) ----------------------------------------------------------------

    def launch(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self.run(), name=f"guest-session-{self.short}")
        return self.task

    def poke(self) -> None:
        if not self._poked:
            self._poked = True
            self._queue.put_nowait(_POKE)

    def stop(self, *, handover: bool) -> None:
        self._queue.put_nowait(_Stop(handover))

    # --- the loop -------------------------------------------------------------------------------------

    async def run(self) -> None:
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
        while not self._finished:
            item = await self._next_input()
            if isinstance(item, _Stop):
                await self._stop(item.handover)
                return
            now = time.time()
            await self._handle(item, now)
            await self._drain(now)
            if self._reconcile is not None and self._reconcile.history_answered and not self._links.history_in_flight:
                await self._resolve_reconcile(None, now)  # the backfill is over and our message was not in it
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
        reconcile = self._reconcile
        if reconcile is not None and (deadline is None or reconcile.deadline < deadline):
            return reconcile.deadline
        return deadline

    async def _handle(self, item: _Input, now: float) -> None:
        adapter = self._require_adapter()
        machine, links = adapter.machine, self._links
        match item:
            case _Tick():
                machine.timer(now)
                if self._reconcile is not None and now >= self._reconcile.deadline:
                    await self._resolve_reconcile(None, now)
            case _Poke():
                self._poked = False
                self._pump_commands()
            case _Stepped():
                await self._stepped(item, now)
            case _Opened(gen=gen, conn=conn):
                if gen != links.gen or self._finished:
                    self._spawn(self._close(conn, 1000, "superseded"))
                    return
                links.conn, links.lost_reported = conn, False
                links.reader = asyncio.create_task(self._read(gen, conn))
                machine.connection_made(now)
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
        """Carry out everything the machine asks, in its order, until it is quiet."""
        adapter = self._require_adapter()
        while True:
            frames = adapter.frames()
            for frame in frames:
                await self._send(frame)
            intents = adapter.machine.intents_to_run()
            for intent in intents:
                self._dispatch(intent)
            events = adapter.machine.events_received()
            for event in events:
                await self._on_event(event, now)
            if not (frames or intents or events):
                return

    # --- opening and closing ----------------------------------------------------------------------------

    async def _open(self) -> bool:
        ctx = self._ctx
        record = await ctx.store.load(self.ident)
        if record is None or record.owner != ctx.worker_id:
            return False
        self._record, self._token, self._last_own_id = record, record.token, record.last_own_id
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
        self._start = loaded.command
        secret = await ctx.store.get_secret(self.ident)
        if record.status is SessionStatus.live and secret is None:
            await self._terminal("system", "the session's resume credentials expired")
            return False
        adapter = build_adapter(self._start, secret, record, ctx.settings, ctx.io.api_url)
        if adapter.needs_saving and adapter.secret is not None:
            await ctx.store.put_secret(self.ident, adapter.secret, ctx.settings.session_ttl_s)
        self._adapter = adapter
        now = time.time()
        # The first checkpoint comes a period after opening, not with the first agent message: until then
        # an adopter reads the (short) history and the relay set keeps it exactly once.
        self._checkpoint_at = now
        log.info("session %s: %s %s (%s)", self.short, "resuming" if adapter.resuming else "starting",
                 adapter.protocol, record.status.value)
        adapter.start(now)
        self._pump_commands()
        await self._take_before_connecting(now)
        await self._drain(now)
        return True

    async def _stop(self, handover: bool) -> None:
        # A command taken by a step in flight stays current and handed: the adopter settles it.
        await self._settle_step()
        await self._lane.flush()  # what was relayed is in Redis before the checkpoint says so
        if handover and not self._finished and self._adapter is not None:
            checkpoint = self._adapter.checkpoint()
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
        tasks = [t for t in (links.reader, self._step, *links.tasks) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        conn, links.conn = links.conn, None
        if conn is not None:
            await self._close(conn, 1000, "session over")

    # --- commands ---------------------------------------------------------------------------------------

    def _pump_commands(self) -> None:
        """Take the next command while none is in hand (its answer comes back as :class:`_Stepped`)."""
        if self._in_hand is not None or self._finished:
            return
        if self._step is not None:
            self._repoll = True  # the step may have looked before this command was routed
            return
        self._launch_step()

    def _launch_step(self, finished: str = "", ending: Words = (), **fields: str) -> None:
        """Record ``finished``'s ending and take the next command, in one script, off the input path.

        The runner goes on handling inputs while the step is in Redis: the guest's echo and the agent's
        answer arrive back to back, and an agent message that waited for the command path's round trip
        waited for a busy Redis (measured: most of the relay tail at ten thousand sessions)."""
        assert self._step is None, "one command step at a time"
        self._repoll = False
        step = asyncio.create_task(self._ctx.store.take(self.ident, self._token, finished=finished, ending=ending,
                                                        begin=True, **fields))
        step.add_done_callback(lambda task: self._queue.put_nowait(_Stepped(task)) if not task.cancelled() else None)
        self._step = step

    async def _take_before_connecting(self, now: float) -> None:
        """At open, unlike later, the first command is waited for before the socket opens (the machine's
        socket request goes out with the first drain): a guest.start must hold the relay lane before any
        agent event arrives, and a message an adopted session may already have sent must be known
        before the resumed session's history backfill, which settles it, comes in."""
        while self._step is not None and self._in_hand is None:
            step = self._step
            await asyncio.wait([step])
            await self._stepped(_Stepped(step), now)

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
        if taken.outcome not in ("taken", "busy"):
            if self._repoll:
                self._pump_commands()
            return
        ctx = self._ctx
        try:
            loaded = ctx.desk.parse(taken.record)
        except UnreadableCommand as exc:
            await ctx.desk.fail(exc.record, f"command body unreadable: {exc}")
            loaded = None
        if loaded is None or loaded.record.state.terminal:
            self._launch_step(finished=taken.command_id)  # skip it: finish it and take the next
            return
        adopted = taken.outcome == "busy" and self._record is not None and self._record.handed
        # The take marked the record running (begin=True), so it reads as it now is in Redis.
        await self._begin(_InHand(loaded.record, loaded.command, "send", adopted=adopted), now)

    async def _begin(self, hand: _InHand, now: float) -> None:
        self._in_hand = hand
        command, machine = hand.command, self._require_adapter().machine
        match command:
            case GuestStart() if self._record is not None and hand.record.command_id == self._record.start_command_id:
                hand.kind = "start"
                self._lane.hold()  # agent events wait for guest.started, which ending this command writes
                if self._started:
                    await self._start_progress(now)
            case GuestStart():
                hand.kind = "attach"
                conversation_id, _ = self._require_adapter().ids()
                await self._succeed(CommandResult(conversation_id=conversation_id, reused=True),
                                    self._started_event(hand.record, resumed=True))
            case GuestSend():
                hand.kind = "send"
                await self._hand_text(command.text, now)
            case GuestTyping():
                hand.kind = "typing"
                sent = machine.send_typing(now)
                note = None if sent else "typing indicator skipped (throttled, or the session is not ready)"
                await self._succeed(CommandResult(note=note))
            case GuestEnd():
                hand.kind = "end"
                self._ending = True
                machine.end(now)

    async def _hand_text(self, text: str, now: float) -> None:
        hand = self._in_hand
        assert hand is not None
        if hand.adopted and self._reconcile is None:
            since = self._record.taken_at if self._record is not None else now
            settings = self._ctx.settings
            # Sent by the previous owner, if at all, after it took the command (give or take the clocks).
            sought = OwnMessage(text, datetime.fromtimestamp(since - settings.history_clock_slack_s, UTC),
                                {self._last_own_id} if self._last_own_id else ())
            self._reconcile = _Reconcile(text, sought, now + settings.reconcile_timeout_s)
            log.info("session %s: settling a message a previous owner may have sent", self.short)
            return
        # A guest.send was marked handed as it was taken; a first_message is marked now.
        if hand.kind != "send" and not await self._ctx.store.update(self.ident, self._token, handed=1):
            raise _Fenced
        hand.tracing_id = self._require_adapter().machine.send_text(text, now)

    async def _resolve_reconcile(self, message_id: str | None, now: float) -> None:
        reconcile, self._reconcile = self._reconcile, None
        hand = self._in_hand
        if reconcile is None or hand is None:
            return
        hand.adopted = False
        if message_id is not None:
            log.info("session %s: the message was delivered before the handover", self.short)
            await self._text_delivered(message_id)
        else:
            await self._hand_text(reconcile.text, now)

    async def _start_progress(self, now: float) -> None:
        hand = self._in_hand
        assert hand is not None and isinstance(hand.command, GuestStart)
        if hand.command.first_message and hand.kind == "start":
            hand.kind = "first"
            await self._hand_text(hand.command.first_message, now)
        else:
            await self._complete_start(None)

    async def _complete_start(self, message_id: str | None) -> None:
        hand = self._in_hand
        assert hand is not None
        conversation_id, _ = self._require_adapter().ids()
        await self._succeed(CommandResult(conversation_id=conversation_id, message_id=message_id),
                            self._started_event(hand.record, resumed=False))

    async def _text_delivered(self, message_id: str | None) -> None:
        hand = self._in_hand
        assert hand is not None
        finish = {"last_own_id": message_id} if message_id else {}
        if message_id:
            self._last_own_id = message_id
        if hand.kind == "first":
            await self._complete_start(message_id)  # its finish records no id; harmless for one message
        else:
            await self._succeed(CommandResult(message_id=message_id), **finish)

    async def _succeed(self, result: CommandResult, *extra: EventBase, **finish: str) -> None:
        hand, self._in_hand = self._in_hand, None
        assert hand is not None
        await self._finish_command(hand.record.command_id, self._ctx.desk.succeeded(hand.record, result, *extra),
                                   **finish)

    async def _fail(self, reason: str, error: GenesysErrorInfo | None = None, hint: str | None = None) -> None:
        hand, self._in_hand = self._in_hand, None
        assert hand is not None
        await self._finish_command(hand.record.command_id, self._ctx.desk.failed(hand.record, reason, error, hint))

    async def _finish_command(self, command_id: str, ending: Words, **fields: str) -> None:
        """Record the command's ending and take the next one in one step; once the session has ended,
        record it and wait (what follows, the session's end, must not overtake it)."""
        if not self._finished:
            self._launch_step(finished=command_id, ending=ending, **fields)
            return
        if not await self._ctx.store.finish(self.ident, self._token, command_id, ending=ending, **fields):
            raise _Fenced
        self._lane.release()

    def _started_event(self, record: CommandRecord, *, resumed: bool) -> GuestStarted:
        conversation_id, _ = self._require_adapter().ids()
        return GuestStarted(**about(record), session_key=self._session_key(), protocol=self._protocol(),
                            conversation_id=conversation_id, resumed=resumed)

    # --- machine events ---------------------------------------------------------------------------------

    async def _on_event(self, event: GuestEvent, now: float) -> None:
        hand = self._in_hand
        match event:
            case SessionStarted():
                await self._on_started(event, now)
            case AgentMessage():
                self._relay_message(event, now)
            case AgentJoined():
                self._relay([(f"joined:{event.member_id}",
                              GuestAgentJoined(**self._about(), agent_name=event.display_name))])
            case AgentTyping():
                self._relay([("", GuestTypingEvent(**self._about()))])
            case GuestMessageConfirmed() if hand is not None and hand.tracing_id == event.tracing_id:
                await self._text_delivered(event.message_id)
            case MessageRejected() if hand is not None and hand.tracing_id == event.tracing_id:
                await self._on_rejected(event, now)
            case RateLimited() if hand is not None and hand.tracing_id is not None:
                await self._ctx.desk.retrying(hand.record, hand.record.attempts, event.retry_after,
                                              "rate limited (429): sent again after the delay")
            case ConversationDisconnected():
                self._agent_ended = True
                self._relay([("ended", GuestEnded(**self._about(), by="agent", reason="agent ended"))])
                if not self._ending:
                    self._ending = True
                    self._require_adapter().machine.end(now)  # close our side cleanly
            case ConnectionClosed():
                await self._terminal(self._ended_by("guest" if event.by_guest else "system"), event.reason)
            case SessionExpired():
                await self._terminal(self._ended_by("system"), "the web messaging session expired")
            case Ended():
                await self._terminal(self._ended_by(event.by), event.reason)
            case ProtocolError():
                log.warning("session %s: protocol: %s (code %s)", self.short, event.reason, event.code)
                if self._reconcile is not None and self._started:
                    await self._resolve_reconcile(None, now)  # the backfill failed: send rather than lose it
            case Reconnecting():
                log.info("session %s: reconnecting (attempt %d) in %.1f s", self.short, event.attempt, event.delay)
            case _:
                log.debug("session %s: %s", self.short, type(event).__name__)

    async def _on_started(self, event: SessionStarted, now: float) -> None:
        if self._started:
            log.info("session %s: resumed after a reconnect (new session: %s)", self.short, event.new_session)
            return
        self._started = True
        ctx, adapter = self._ctx, self._require_adapter()
        conversation_id, member_id = adapter.ids()
        record = self._record
        if record is not None and record.status is SessionStatus.starting:
            ids = {k: v for k, v in (("conversation_id", conversation_id), ("member_id", member_id)) if v}
            if not await ctx.store.update(self.ident, self._token, status=SessionStatus.live.value, **ids):
                raise _Fenced
            assert self._start is not None
            cached = GuestSession(protocol=adapter.protocol, deployment_id=self._start.deployment_id,  # type: ignore[arg-type]
                                  conversation_id=conversation_id, member_id=member_id)
            await ctx.desk.run_sync(ctx.cache.put_guest, GuestKey(org=record.org, session_key=record.session_key),
                                    cached)
        await self._save_secret_ttl(now)
        if self._reconcile is not None and event.new_session:
            await self._resolve_reconcile(None, now)  # a brand-new session cannot hold the message
        if self._in_hand is not None and self._in_hand.kind == "start":
            await self._start_progress(now)

    async def _on_rejected(self, event: MessageRejected, now: float) -> None:
        hand = self._in_hand
        assert hand is not None
        error, hint = rejection_details(self._protocol(), event.code, event.reason)
        maybe = " (it may have reached Genesys before the session failed)" if event.maybe_delivered else ""
        if hand.kind == "first":
            # The start is all or nothing: a session whose first message was refused is closed again.
            await self._fail(f"the session started but first_message was refused: {event.reason}{maybe}", error, hint)
            self._ending = True
            self._require_adapter().machine.end(now)
        else:
            await self._fail(f"message refused: {event.reason}{maybe}", error, hint)

    def _ended_by(self, by: EndedBy) -> EndedBy:
        return "agent" if self._agent_ended else by

    async def _terminal(self, by: EndedBy, reason: str) -> None:
        """The session is over: the end event, the command in hand, the record, what is still queued."""
        if self._finished:
            return
        self._finished = True
        ctx = self._ctx
        await self._settle_step()  # a start's ending (guest.started) goes before guest.ended
        log.info("session %s: ended by %s (%s)", self.short, by, reason)
        self._relay([("ended", GuestEnded(**self._about(), by=by, reason=reason))])
        await self._lane.flush()
        hand = self._in_hand
        if hand is not None:
            if hand.kind == "end":
                await self._succeed(CommandResult(final_state="ended"))
            elif hand.kind in ("start", "first"):
                await self._fail(f"the guest session ended before it was started: {reason}")
            else:
                await self._fail(f"the guest session ended: {reason}")
        record = self._record
        if record is not None:
            await ctx.store.end(self.ident, self._token, by, ctx.settings.ended_retention_s)
            await ctx.desk.run_sync(ctx.cache.invalidate_guest, GuestKey(org=record.org,
                                                                          session_key=record.session_key))
        await settle_leftovers(ctx.store, ctx.desk, self.ident, self._token, f"the guest session has ended ({reason})")

    # --- relaying ---------------------------------------------------------------------------------------

    def _relay_message(self, event: AgentMessage, now: float) -> None:
        bot = (event.originating_entity or "").lower() == "bot"
        batch: list[tuple[str, EventBase]] = []
        if not bot and not self._joined_announced and self._protocol() == "webmessaging":
            # Web Messaging tells the guest nothing when an agent joins: the first human message says it.
            self._joined_announced = True
            batch.append(("joined", GuestAgentJoined(**self._about())))
        batch.append((f"m:{event.message_id}", GuestMessage(**self._about(), message_id=event.message_id,
                                                            text=event.text, sender="bot" if bot else "agent",
                                                            sent_at=event.time)))
        self._relay(batch)
        if now - self._checkpoint_at >= self._ctx.settings.checkpoint_every_s:
            self._checkpoint_at = now
            checkpoint = self._require_adapter().checkpoint()
            if checkpoint is not None:
                self._lane.checkpoint(checkpoint)

    def _relay(self, events: list[tuple[str, EventBase]]) -> None:
        """Queue events on the relay lane (:mod:`workers.guest.relay`): written in order, not waited for."""
        self._lane.put(events)

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
                if self._require_adapter().is_history(intent):
                    links.history_in_flight += 1
                self._spawn(self._rest(intent))  # type: ignore[arg-type]
            case _:
                log.warning("session %s: unknown intent %s", self.short, type(intent).__name__)

    async def _connect(self, gen: int, uri: str, origin: str | None) -> None:
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

    async def _read(self, gen: int, conn: Connection) -> None:
        try:
            async for data in conn:
                self._queue.put_nowait(_Frame(gen, data))
        except (websockets.exceptions.ConnectionClosed, OSError):
            pass
        self._queue.put_nowait(_Lost(gen))

    async def _send(self, frame: str) -> None:
        conn = self._links.conn
        if conn is None:
            return  # the machine hears of the loss through _Lost and resends what matters
        with contextlib.suppress(websockets.exceptions.ConnectionClosed, OSError):
            await conn.send(frame)  # on failure the reader reports the loss

    async def _close(self, conn: Connection, code: int, reason: str, *, report_gen: int | None = None) -> None:
        with contextlib.suppress(Exception):
            await conn.close(code, reason.encode()[:CLOSE_REASON_BYTES].decode(errors="ignore"))
        if report_gen is not None:
            self._queue.put_nowait(_Lost(report_gen))

    async def _rest(self, intent: RestIntent) -> None:
        try:
            body = await self._ctx.io.rest(intent)
        except (GenesysError, GenesysTransportError) as exc:
            self._queue.put_nowait(_RestDone(intent, None, exc))
        else:
            self._queue.put_nowait(_RestDone(intent, body, None))

    async def _rest_done(self, item: _RestDone, now: float) -> None:
        adapter, ctx = self._require_adapter(), self._ctx
        intent = item.intent
        history = adapter.is_history(intent)  # type: ignore[arg-type]
        if history:
            self._links.history_in_flight -= 1
        request_id: str = intent.request_id  # type: ignore[attr-defined]
        if item.error is not None:
            if isinstance(item.error, GenesysError):
                log.info("session %s: %s %s -> %d %s", self.short, intent.method, type(intent).__name__,
                         item.error.status, item.error.code)
            if history and self._reconcile is not None:
                self._reconcile.history_answered = True
            adapter.machine.rest_failed(request_id, now, item.error)
            return
        secret = adapter.secret_from_answer(intent, item.body)  # type: ignore[arg-type]
        if secret is not None:
            # Saved before the machine acts on it: from here on another worker can resume this chat.
            expires = adapter.expires_at()
            await ctx.store.put_secret(self.ident, secret, expires - now if expires else ctx.settings.session_ttl_s)
        if history and self._reconcile is not None:
            found = adapter.find_own(item.body, self._reconcile.sought)
            if found is not None:
                await self._resolve_reconcile(found, now)
            elif self._reconcile is not None:
                self._reconcile.history_answered = True
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

    def _about(self) -> dict[str, str]:
        assert self._record is not None
        return {"session_key": self._record.session_key, "org": self._record.org}

    def _session_key(self) -> str:
        assert self._record is not None
        return self._record.session_key

    def _protocol(self) -> str:
        assert self._record is not None
        return self._record.protocol
