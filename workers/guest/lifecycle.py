"""A guest session's commands, from taken to ended: the sans-I/O unit beside the protocol machine.

The protocol machine (:mod:`guest.webmessaging`, :mod:`guest.guestchat`) speaks to Genesys; this unit
speaks for Parley: which command is in hand, when it has succeeded or failed, what gets relayed.
Like the machine it owns no socket, task, clock or Redis client. The runner
(:mod:`workers.guest.session`) calls its inputs, passing ``now``, then carries out what it asks
(:meth:`CommandLifecycle.effects_to_run`, in order, each awaited) before it sends anything the
machine queued; so a message is recorded as handed before it can reach the wire. The unit calls the
machine directly (send a text, typing, end): that is sans-I/O to sans-I/O.

The command in hand (one at a time, taken from the session's inbox):

====================  =======================================================================
kind                  ends
====================  =======================================================================
``start``             the session's own ``guest.start``: succeeds once the machine says the
                      session started (with ``guest.started``), or becomes ``first``
``first``             its ``first_message`` handed to the machine: succeeds when confirmed;
                      refused, the start fails and the session is ended again
``attach``            another ``guest.start`` for the live session: succeeds at once, ``reused``
``send``              ``guest.send``: succeeds when confirmed, fails when refused
``typing``            succeeds at once (best effort)
``end``               ``guest.end``: succeeds when the session has ended
====================  =======================================================================

Any command still in hand when the session ends fails (``end`` succeeds). A message a previous owner
had handed to its machine (an adopted command) is first *settled*: looked for in the history the
resumed machine backfills (:mod:`guest.ownmessage`); found, it succeeds; absent, or no answer within
``settle_timeout_s``, it is handed again.

Inputs: :meth:`~CommandLifecycle.poke` (commands may be waiting), :meth:`~CommandLifecycle.took` and
:meth:`~CommandLifecycle.took_nothing` (a take step's answer), :meth:`~CommandLifecycle.event` (each
machine event), :meth:`~CommandLifecycle.history_answered` and :meth:`~CommandLifecycle.history_over`
(history pages, while settling), :meth:`~CommandLifecycle.timer` at
:meth:`~CommandLifecycle.next_deadline`.

Effects (:data:`Effect`): :class:`Take` (record an ending and take the next command, one step),
:class:`MarkHanded`, :class:`HoldRelays`, :class:`Relay`, :class:`Checkpoint`, :class:`Retrying`,
:class:`Live`, :class:`End`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from guest.common import earliest
from guest.events import (
    AgentJoined,
    AgentMessage,
    AgentTyping,
    ConnectionClosed,
    ConversationDisconnected,
    Ended,
    GuestEvent,
    GuestMessageConfirmed,
    MessageRejected,
    ProtocolError,
    RateLimited,
    Reconnecting,
    SessionExpired,
    SessionStarted,
)
from guest.ownmessage import OwnMessage
from parley.hints import specific_hint, status_hint, webmessaging_hint_for
from parley.outcomes import about
from parley.records import CommandRecord
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
from workers.guest.commands import Loaded
from workers.guest.relay import Relayed

log = logging.getLogger("parley.guest.session")

EndedBy = Literal["guest", "agent", "system"]
Kind = Literal["start", "first", "attach", "send", "typing", "end"]


class GuestMachine(Protocol):
    """What the unit asks of a protocol machine (both have it)."""

    def send_text(self, text: str, now: float) -> str: ...

    def send_typing(self, now: float) -> bool: ...

    def end(self, now: float) -> None: ...


def rejection_details(protocol: str, code: int | str | None, reason: str) -> tuple[GenesysErrorInfo, str | None]:
    """A machine's rejection code as Genesys error fields plus Parley's hint."""
    if isinstance(code, int):
        status = code if code < 600 else None
        hint = webmessaging_hint_for(code) if protocol == "webmessaging" else status_hint(code)
        return GenesysErrorInfo(status=status, code=str(code), message=reason), hint
    if code:
        return GenesysErrorInfo(code=code, message=reason), specific_hint(code)
    return GenesysErrorInfo(message=reason), None


# --- endings -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Succeeded:
    record: CommandRecord
    result: CommandResult
    extra: tuple[EventBase, ...] = ()  # events written with command.succeeded (guest.started)


@dataclass(frozen=True, slots=True)
class Failed:
    record: CommandRecord
    reason: str
    error: GenesysErrorInfo | None = None
    hint: str | None = None


Ending = Succeeded | Failed


# --- effects -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Take:
    """Record ``ending`` of command ``finished`` (if any), set ``fields`` on the session, take the next
    command: one step, whose answer comes back as :meth:`CommandLifecycle.took` (or ``took_nothing``)."""

    finished: str = ""
    ending: Ending | None = None
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MarkHanded:
    """The session record says the message in hand may be on the wire (before it can be)."""


@dataclass(frozen=True, slots=True)
class HoldRelays:
    """Agent events wait: the start's ending writes ``guest.started``, which must go first."""


@dataclass(frozen=True, slots=True)
class Relay:
    events: Relayed


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Save the machine's relay checkpoint once what was relayed so far is written."""


@dataclass(frozen=True, slots=True)
class Retrying:
    record: CommandRecord
    delay_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class Live:
    """The session started: the record says live, the state cache knows it, the secret lives as long."""


@dataclass(frozen=True, slots=True)
class End:
    """The session is over: relay ``guest.ended``, record ``ending`` (the command in hand), end the
    session's record, settle what is still queued."""

    by: EndedBy
    reason: str
    ending: Ending | None = None


Effect = Take | MarkHanded | HoldRelays | Relay | Checkpoint | Retrying | Live | End
_MARK_HANDED, _HOLD_RELAYS, _CHECKPOINT, _LIVE = MarkHanded(), HoldRelays(), Checkpoint(), Live()


# --- state -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Hand:
    """The command in hand."""

    record: CommandRecord
    command: Command
    kind: Kind = "send"
    sent_since: float | None = None  # a previous owner handed it to its machine, having taken it then
    tracing_id: str | None = None  # the machine's id for the text handed, which its answer carries


@dataclass(slots=True)
class _Settling:
    """A message a previous owner may have sent, looked for in history before it is sent again."""

    sought: OwnMessage
    deadline: float
    history_answered: bool = False  # a page came without it (or the fetch failed)


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What the unit knows of its session from the start."""

    label: str  # for logs: never text, tokens or URIs
    session_key: str
    org: str
    protocol: str
    start_command_id: str
    last_own_id: str | None = None
    settle_timeout_s: float = 60.0
    clock_slack_s: float = 30.0
    checkpoint_every_s: float = 60.0
    idle_end_s: float = 0.0  # end the session after this long without a message either way; 0: never


class CommandLifecycle:
    def __init__(self, facts: SessionFacts, machine: GuestMachine, conversation_id: Callable[[], str | None],
                 now: float) -> None:
        self._facts = facts
        self._machine = machine
        self._conversation_id = conversation_id
        self._about = {"session_key": facts.session_key, "org": facts.org}
        self._effects: list[Effect] = []
        self._hand: Hand | None = None
        self._taking = False  # a Take is out and not yet answered
        self._repoll = False  # poked while taking: that take may have looked too early
        self._settling: _Settling | None = None  # only while an adopted command is in hand
        self._started = False  # the machine said the session started
        self._ending = False  # the machine was asked to end the session
        self._agent_ended = False  # the agent ended it: whatever closes next, the end is theirs
        self._idle_ended = False  # Parley ended it for idleness (the agent's end may be untold: Disconnect off)
        self._active_at = now  # the last message either way, or command taken
        self._joined_announced = False  # web messaging: the first human message says an agent joined
        self._last_own_id = facts.last_own_id  # the id of the last message confirmed
        # The first checkpoint comes a period after opening, not with the first agent message: until then
        # an adopter reads the (short) history and the relay set keeps it exactly once.
        self._checkpoint_at = now
        self.finished = False  # the session ended (End was asked for)

    # --- outputs ----------------------------------------------------------------------------------------

    def effects_to_run(self) -> list[Effect]:
        """What the runner must carry out, in order, before it sends what the machine queued."""
        effects, self._effects = self._effects, []
        return effects

    def next_deadline(self) -> float | None:
        settling = self._settling
        return earliest((settling.deadline if settling is not None else None, self._idle_deadline()))

    def _idle_deadline(self) -> float | None:
        idle_s = self._facts.idle_end_s
        if not idle_s or not self._started or self._ending or self.finished:
            return None
        return self._active_at + idle_s

    @property
    def in_hand(self) -> bool:
        return self._hand is not None

    @property
    def traceparent(self) -> str | None:
        """The trace context of the command in hand (:mod:`parley.tracing`): the frames sent for it join its trace."""
        return self._hand.record.traceparent if self._hand is not None else None

    @property
    def sought(self) -> OwnMessage | None:
        """The message to look for in a history page (settling), else None."""
        settling = self._settling
        return settling.sought if settling is not None else None

    @property
    def waits_for_history_end(self) -> bool:
        """Settling, and a history page came without the message: the backfill's end decides."""
        settling = self._settling
        return settling is not None and settling.history_answered

    # --- inputs: commands -------------------------------------------------------------------------------

    def poke(self) -> None:
        """Commands may be waiting: take the next one unless one is in hand."""
        if self._hand is not None or self.finished:
            return
        if self._taking:
            self._repoll = True
            return
        self._take()

    def took(self, command_id: str, loaded: Loaded | None, now: float, *, sent_since: float | None = None) -> None:
        """A take answered with command ``command_id``; ``loaded`` None when unreadable or gone.
        ``sent_since``: a previous owner had handed it to its machine, having taken it then."""
        self._taking = False
        if loaded is None or loaded.record.state.terminal:
            self._take(command_id)  # skip it: finish it and take the next
            return
        self._begin(Hand(loaded.record, loaded.command, sent_since=sent_since), now)

    def took_nothing(self) -> None:
        self._taking = False
        if self._repoll:
            self.poke()

    # --- inputs: the machine ----------------------------------------------------------------------------

    def event(self, event: GuestEvent, now: float) -> None:
        hand, label = self._hand, self._facts.label
        match event:
            case AgentMessage():
                self._relay_message(event, now)
            case GuestMessageConfirmed() if hand is not None and hand.tracing_id == event.tracing_id:
                self._active_at = now
                self._text_delivered(event.message_id)
            case SessionStarted():
                self._on_started(event, now)
            case AgentJoined():
                self._relay([(f"joined:{event.member_id}",
                              GuestAgentJoined(**self._about, agent_name=event.display_name))])
            case AgentTyping():
                self._relay([("", GuestTypingEvent(**self._about))])
            case MessageRejected() if hand is not None and hand.tracing_id == event.tracing_id:
                self._on_rejected(event, now)
            case RateLimited() if hand is not None and hand.tracing_id is not None:
                self._effects.append(Retrying(hand.record, event.retry_after,
                                              "rate limited (429): sent again after the delay"))
            case ConversationDisconnected():
                self._agent_ended = True
                self._relay([("ended", GuestEnded(**self._about, by="agent", reason="agent ended"))])
                if not self._ending:
                    self._ending = True
                    self._machine.end(now)  # close our side cleanly
            case ConnectionClosed():
                self._terminal(self._ended_by("guest" if event.by_guest else "system"), event.reason)
            case SessionExpired():
                self._terminal(self._ended_by("system"), "the web messaging session expired")
            case Ended():
                self._terminal(self._ended_by(event.by), event.reason)
            case ProtocolError():
                log.warning("session %s: protocol: %s (code %s)", label, event.reason, event.code)
                if self._settling is not None and self._started:
                    self._settle(None, now)  # the backfill failed: send rather than lose it
            case Reconnecting():
                log.info("session %s: reconnecting (attempt %d) in %.1f s", label, event.attempt, event.delay)
            case _:
                log.debug("session %s: %s", label, type(event).__name__)

    def history_answered(self, found: str | None, now: float) -> None:
        """A history page (or its failure) while settling; ``found``: the id of the message sought in it."""
        settling = self._settling
        if settling is None:
            return
        if found is not None:
            self._settle(found, now)
        else:
            settling.history_answered = True

    def history_over(self, now: float) -> None:
        """No history request is in flight: a backfill that did not hold the message is over."""
        if self.waits_for_history_end:
            self._settle(None, now)

    def timer(self, now: float) -> None:
        settling = self._settling
        if settling is not None and now >= settling.deadline:
            self._settle(None, now)
        idle_at = self._idle_deadline()
        if idle_at is not None and now >= idle_at:
            # Under Genesys' default Messenger configuration the agent's end is never told to the guest:
            # a session nobody wrote in for this long is over, and Parley closes it rather than hold it.
            log.info("session %s: idle for %g s; ending it", self._facts.label, self._facts.idle_end_s)
            self._idle_ended = self._ending = True
            self._machine.end(now)

    # --- commands ---------------------------------------------------------------------------------------

    def _take(self, finished: str = "", ending: Ending | None = None, **fields: str) -> None:
        assert not self._taking, "one take at a time"
        self._taking, self._repoll = True, False
        self._effects.append(Take(finished, ending, fields))

    def _begin(self, hand: Hand, now: float) -> None:
        self._hand = hand
        self._active_at = now
        command = hand.command
        match command:
            case GuestStart() if hand.record.command_id == self._facts.start_command_id:
                hand.kind = "start"
                self._effects.append(_HOLD_RELAYS)
                if self._started:
                    self._start_progress(now)
            case GuestStart():
                hand.kind = "attach"
                self._succeed(CommandResult(conversation_id=self._conversation_id(), reused=True),
                              self._started_event(hand.record, resumed=True))
            case GuestSend():
                self._hand_text(command.text, now)
            case GuestTyping():
                hand.kind = "typing"
                sent = self._machine.send_typing(now)
                self._succeed(CommandResult(note=None if sent else
                                            "typing indicator skipped (throttled, or the session is not ready)"))
            case GuestEnd():
                hand.kind = "end"
                self._ending = True
                self._machine.end(now)

    def _hand_text(self, text: str, now: float) -> None:
        hand = self._hand
        assert hand is not None
        if hand.sent_since is not None:
            # Sent by the previous owner, if at all, after it took the command (give or take the clocks).
            facts = self._facts
            not_before = datetime.fromtimestamp(hand.sent_since - facts.clock_slack_s, UTC)
            sought = OwnMessage(text, not_before, {self._last_own_id} if self._last_own_id else ())
            self._settling = _Settling(sought, now + facts.settle_timeout_s)
            log.info("session %s: settling a message a previous owner may have sent", facts.label)
            return
        if hand.kind != "send":
            self._effects.append(_MARK_HANDED)  # a guest.send was marked handed as it was taken
        hand.tracing_id = self._machine.send_text(text, now)

    def _settle(self, message_id: str | None, now: float) -> None:
        settling, self._settling = self._settling, None
        hand = self._hand
        if settling is None or hand is None:
            return
        hand.sent_since = None
        if message_id is not None:
            log.info("session %s: the message was delivered before the handover", self._facts.label)
            self._text_delivered(message_id)
        else:
            self._hand_text(settling.sought.text, now)

    def _start_progress(self, now: float) -> None:
        hand = self._hand
        assert hand is not None and isinstance(hand.command, GuestStart)
        if hand.command.first_message and hand.kind == "start":
            hand.kind = "first"
            self._hand_text(hand.command.first_message, now)
        else:
            self._complete_start(None)

    def _complete_start(self, message_id: str | None) -> None:
        hand = self._hand
        assert hand is not None
        self._succeed(CommandResult(conversation_id=self._conversation_id(), message_id=message_id),
                      self._started_event(hand.record, resumed=False))

    def _text_delivered(self, message_id: str | None) -> None:
        hand = self._hand
        assert hand is not None
        fields = {"last_own_id": message_id} if message_id else {}
        if message_id:
            self._last_own_id = message_id
        if hand.kind == "first":
            self._complete_start(message_id)  # its finish records no id; harmless for one message
        else:
            self._succeed(CommandResult(message_id=message_id), **fields)

    def _succeed(self, result: CommandResult, *extra: EventBase, **fields: str) -> None:
        hand, self._hand = self._hand, None
        assert hand is not None
        self._take(hand.record.command_id, Succeeded(hand.record, result, extra), **fields)

    def _fail(self, reason: str, error: GenesysErrorInfo | None = None, hint: str | None = None) -> None:
        hand, self._hand = self._hand, None
        assert hand is not None
        self._take(hand.record.command_id, Failed(hand.record, reason, error, hint))

    def _started_event(self, record: CommandRecord, *, resumed: bool) -> GuestStarted:
        facts = self._facts
        return GuestStarted(**about(record), session_key=facts.session_key, protocol=facts.protocol,
                            conversation_id=self._conversation_id(), resumed=resumed)

    # --- machine events ---------------------------------------------------------------------------------

    def _on_started(self, event: SessionStarted, now: float) -> None:
        if self._started:
            log.info("session %s: resumed after a reconnect (new session: %s)", self._facts.label, event.new_session)
            return
        self._started = True
        self._effects.append(_LIVE)
        if self._settling is not None and event.new_session:
            self._settle(None, now)  # a brand-new session cannot hold the message
        if self._hand is not None and self._hand.kind == "start":
            self._start_progress(now)

    def _on_rejected(self, event: MessageRejected, now: float) -> None:
        hand = self._hand
        assert hand is not None
        error, hint = rejection_details(self._facts.protocol, event.code, event.reason)
        maybe = " (it may have reached Genesys before the session failed)" if event.maybe_delivered else ""
        if hand.kind == "first":
            # The start is all or nothing: a session whose first message was refused is closed again.
            self._fail(f"the session started but first_message was refused: {event.reason}{maybe}", error, hint)
            self._ending = True
            self._machine.end(now)
        else:
            self._fail(f"message refused: {event.reason}{maybe}", error, hint)

    def _ended_by(self, by: EndedBy) -> EndedBy:
        if self._agent_ended:
            return "agent"
        return "system" if self._idle_ended else by

    def _terminal(self, by: EndedBy, reason: str) -> None:
        if self.finished:
            return
        self.finished = True
        if self._idle_ended and not self._agent_ended:
            reason = f"no message either way for {self._facts.idle_end_s:g} s (PARLEY_GUEST_IDLE_END_S)"
        hand, self._hand = self._hand, None
        ending: Ending | None = None
        if hand is not None:
            if hand.kind == "end":
                ending = Succeeded(hand.record, CommandResult(final_state="ended"))
            elif hand.kind in ("start", "first"):
                ending = Failed(hand.record, f"the guest session ended before it was started: {reason}")
            else:
                ending = Failed(hand.record, f"the guest session ended: {reason}")
        self._effects.append(End(by, reason, ending))

    # --- relaying ---------------------------------------------------------------------------------------

    def _relay_message(self, event: AgentMessage, now: float) -> None:
        self._active_at = now
        bot = (event.originating_entity or "").lower() == "bot"
        batch: Relayed = []
        if not bot and not self._joined_announced and self._facts.protocol == "webmessaging":
            # Web Messaging tells the guest nothing when an agent joins: the first human message says it.
            self._joined_announced = True
            batch.append(("joined", GuestAgentJoined(**self._about)))
        batch.append((f"m:{event.message_id}", GuestMessage(**self._about, message_id=event.message_id,
                                                            text=event.text, sender="bot" if bot else "agent",
                                                            sent_at=event.time)))
        self._relay(batch)
        if now - self._checkpoint_at >= self._facts.checkpoint_every_s:
            self._checkpoint_at = now
            self._effects.append(_CHECKPOINT)

    def _relay(self, events: Relayed) -> None:
        self._effects.append(Relay(events))
