"""The command lifecycle (workers.guest.lifecycle) without sockets, Redis or a clock: commands and machine
events in, effects out; the protocol machine is a fake that records what it was asked."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from guest.events import (
    AgentJoined,
    AgentMessage,
    AgentTyping,
    ConnectionClosed,
    ConversationDisconnected,
    Ended,
    GuestMessageConfirmed,
    MessageRejected,
    ProtocolError,
    RateLimited,
    SessionStarted,
)
from parley.records import CommandRecord, State
from schemas.events import GuestAgentJoined, GuestMessage, GuestStarted
from schemas.validation import parse_command
from workers.guest.commands import Loaded
from workers.guest.lifecycle import (
    Checkpoint,
    CommandLifecycle,
    Effect,
    End,
    Failed,
    HoldRelays,
    Live,
    MarkHanded,
    Relay,
    Retrying,
    SessionFacts,
    Succeeded,
    Take,
)

T0 = 1_767_225_600.0
DEPLOYMENT = "6f1d3c2b-0000-4000-8000-00000000d001"
ORG = "6f1d3c2b-0000-4000-8000-00000000a001"
START_ID = "start-1"


class FakeMachine:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.typing_allowed = True

    def send_text(self, text: str, now: float) -> str:
        self.calls.append(("send_text", text))
        return f"t{len(self.calls)}"

    def send_typing(self, now: float) -> bool:
        self.calls.append(("send_typing",))
        return self.typing_allowed

    def end(self, now: float) -> None:
        self.calls.append(("end",))


def loaded(command_id: str, body: dict[str, Any], state: State = State.running) -> Loaded:
    body = {"idempotency_key": f"k-{uuid.uuid4().hex[:6]}", "session_key": "sk", **body}
    raw = json.dumps(body)
    record = CommandRecord(command_id=command_id, type=body["type"], org="o", idempotency_key=body["idempotency_key"],
                           state=state, body=raw, accepted_at="2026-01-01T00:00:00+00:00", attempts=1)
    return Loaded(record, parse_command(raw))


def start(first_message: str | None = None) -> Loaded:
    body: dict[str, Any] = {"type": "guest.start", "deployment_id": DEPLOYMENT}
    if first_message:
        body["first_message"] = first_message
    return loaded(START_ID, body)


def send(command_id: str, text: str) -> Loaded:
    return loaded(command_id, {"type": "guest.send", "text": text})


class Session:
    """A lifecycle, its fake machine, and the effects it asked for so far."""

    def __init__(self, protocol: str = "webmessaging", last_own_id: str | None = None, idle_end_s: float = 0) -> None:
        self.machine = FakeMachine()
        self.conversation_id: str | None = "conv-1" if protocol == "guestchat" else None
        facts = SessionFacts(label="test", session_key="sk", org="o", protocol=protocol, start_command_id=START_ID,
                             last_own_id=last_own_id, settle_timeout_s=60, clock_slack_s=30, checkpoint_every_s=60,
                             idle_end_s=idle_end_s)
        self.life = CommandLifecycle(facts, self.machine, lambda: self.conversation_id, T0)
        self.now = T0

    def effects(self) -> list[Effect]:
        return self.life.effects_to_run()

    def take(self, command: Loaded, *, sent_since: float | None = None) -> list[Effect]:
        """Poke, answer the take with ``command``; the effects after the answer."""
        self.life.poke()
        assert self.effects()[-1] == Take()
        self.life.took(command.record.command_id, command, self.now, sent_since=sent_since)
        return self.effects()

    def event(self, event: Any) -> list[Effect]:
        self.life.event(event, self.now)
        return self.effects()

    def started(self, new_session: bool = True) -> list[Effect]:
        return self.event(SessionStarted(new_session=new_session, conversation_id=self.conversation_id))

    def live(self, protocol_first: str | None = None) -> None:
        """A started session with its guest.start done and its next take answered with nothing."""
        self.take(start(protocol_first))
        self.started()
        self.life.took_nothing()


def only(effects: list[Effect], kind: type) -> list[Any]:
    return [e for e in effects if isinstance(e, kind)]


def shape(relay: Relay) -> list[tuple[str, dict[str, Any]]]:
    """A relay's events without their own id and time."""
    return [(dedup, event.model_dump(exclude={"id", "at"}, exclude_none=True)) for dedup, event in relay.events]


def ending(effects: list[Effect]) -> Succeeded | Failed:
    (take,) = only(effects, Take)
    assert take.ending is not None
    return take.ending


# --- taking -------------------------------------------------------------------------------------------


def test_one_take_at_a_time_and_a_poke_during_it_takes_again_if_it_found_nothing() -> None:
    s = Session()
    s.life.poke()
    assert s.effects() == [Take()]
    s.life.poke()
    assert s.effects() == [], "a take is out already"
    s.life.took_nothing()
    assert s.effects() == [Take()], "the take in flight may have looked before the new command was routed"
    s.life.took_nothing()
    assert s.effects() == []


def test_a_finished_or_unreadable_command_is_skipped_and_the_next_taken() -> None:
    s = Session()
    s.life.poke()
    s.effects()
    s.life.took("gone", None, s.now)
    assert s.effects() == [Take("gone")]
    done = send("c2", "hi")
    s.life.took("c2", Loaded(done.record.model_copy(update={"state": State.succeeded}), done.command), s.now)
    assert s.effects() == [Take("c2")]
    assert not s.life.in_hand and s.machine.calls == []


# --- guest.start --------------------------------------------------------------------------------------


def test_start_holds_relays_and_succeeds_with_guest_started_when_the_session_starts() -> None:
    s = Session()
    assert s.take(start()) == [HoldRelays()]
    effects = s.started()
    assert effects[0] == Live()
    done = ending(effects)
    assert isinstance(done, Succeeded) and done.record.command_id == START_ID
    (started,) = done.extra
    assert isinstance(started, GuestStarted) and not started.resumed and started.session_key == "sk"


def test_start_with_a_first_message_marks_it_handed_and_succeeds_when_confirmed() -> None:
    s = Session("guestchat")
    s.take(start("hello"))
    effects = s.started()
    assert effects == [Live(), MarkHanded()], "recorded as handed before it can reach the wire"
    assert s.machine.calls == [("send_text", "hello")]
    done = ending(s.event(GuestMessageConfirmed(tracing_id="t1", message_id="m1")))
    assert isinstance(done, Succeeded) and done.result.message_id == "m1" and done.result.conversation_id == "conv-1"


def test_a_refused_first_message_fails_the_start_and_ends_the_session() -> None:
    s = Session()
    s.take(start("hello"))
    s.started()
    done = ending(s.event(MessageRejected(tracing_id="t1", code=4011, reason="too long")))
    assert isinstance(done, Failed) and "first_message was refused: too long" in done.reason
    assert done.error is not None and done.error.code == "4011"
    assert s.machine.calls[-1] == ("end",)


def test_another_start_attaches_to_the_live_session() -> None:
    s = Session("guestchat")
    s.live()
    again = loaded("start-2", {"type": "guest.start", "protocol": "guestchat", "deployment_id": DEPLOYMENT,
                               "organization_id": ORG, "queue_name": "q", "display_name": "Ada"})
    done = ending(s.take(again))
    assert isinstance(done, Succeeded) and done.result.reused and done.result.conversation_id == "conv-1"
    assert isinstance(done.extra[0], GuestStarted) and done.extra[0].resumed


# --- guest.send, typing, end --------------------------------------------------------------------------


def test_a_send_succeeds_on_its_own_confirmation_and_records_the_message_id() -> None:
    s = Session()
    s.live()
    assert s.take(send("c2", "hi")) == [], "a guest.send was marked handed as it was taken"
    assert s.machine.calls == [("send_text", "hi")]
    assert s.event(GuestMessageConfirmed(tracing_id="someone else's", message_id="m0")) == []
    (take,) = s.event(GuestMessageConfirmed(tracing_id="t1", message_id="m1"))
    assert isinstance(take, Take) and take.finished == "c2" and take.fields == {"last_own_id": "m1"}
    assert isinstance(take.ending, Succeeded) and take.ending.result.message_id == "m1"


def test_a_refused_send_fails_with_the_hint_and_a_rate_limit_is_reported_as_retrying() -> None:
    s = Session()
    s.live()
    s.take(send("c2", "hi"))
    (retrying,) = s.event(RateLimited(retry_after=3.0))
    assert isinstance(retrying, Retrying) and retrying.delay_s == 3.0 and retrying.record.command_id == "c2"
    done = ending(s.event(MessageRejected(tracing_id="t1", code=409, reason="read-only", maybe_delivered=True)))
    assert isinstance(done, Failed) and done.reason.startswith("message refused: read-only (it may have reached")
    assert done.hint is not None


def test_typing_succeeds_at_once_with_a_note_when_skipped() -> None:
    s = Session()
    s.live()
    s.machine.typing_allowed = False
    done = ending(s.take(loaded("c2", {"type": "guest.typing"})))
    assert isinstance(done, Succeeded) and "skipped" in (done.result.note or "")


def test_end_asks_the_machine_to_end_and_succeeds_when_the_session_has_ended() -> None:
    s = Session()
    s.live()
    assert s.take(loaded("c2", {"type": "guest.end"})) == []
    assert s.machine.calls == [("end",)]
    (end,) = s.event(Ended(by="guest", reason="guest left"))
    assert isinstance(end, End) and end.by == "guest" and isinstance(end.ending, Succeeded)
    assert end.ending.result.final_state == "ended"
    assert s.life.finished and s.event(Ended(by="system", reason="again")) == []


def test_the_session_ending_fails_the_command_in_hand_and_an_agent_end_is_the_agents() -> None:
    s = Session()
    s.live()
    s.take(send("c2", "hi"))
    (relay,) = s.event(ConversationDisconnected(read_only=True))
    assert shape(relay) == [("ended", {"session_key": "sk", "org": "o", "type": "guest.ended", "by": "agent",
                                       "reason": "agent ended"})]
    assert s.machine.calls[-1] == ("end",)
    (end,) = s.event(ConnectionClosed(reason="closed", by_guest=True))
    assert isinstance(end, End) and end.by == "agent"
    assert isinstance(end.ending, Failed) and end.ending.reason == "the guest session ended: closed"


def test_a_session_that_ends_before_it_started_fails_its_start() -> None:
    s = Session()
    s.take(start())
    (end,) = s.event(Ended(by="system", reason="conversation not created"))
    assert isinstance(end, End) and isinstance(end.ending, Failed)
    assert end.ending.reason.startswith("the guest session ended before it was started")
    s.life.poke()
    assert s.effects() == [], "nothing is taken once the session has ended"


# --- settling a message a previous owner may have sent ------------------------------------------------


def adopted(last_own_id: str | None = "m0") -> Session:
    s = Session(last_own_id=last_own_id)
    s.life.poke()
    s.effects()
    taken_at = T0 - 5
    s.life.took("c2", send("c2", "hi"), s.now, sent_since=taken_at)
    assert s.effects() == [] and s.machine.calls == [], "not sent blind"
    return s


def test_an_adopted_message_found_in_history_succeeds_without_being_sent_again() -> None:
    s = adopted()
    sought = s.life.sought
    assert sought is not None and sought.text == "hi" and "m0" in sought.confirmed
    assert sought.not_before == datetime.fromtimestamp(T0 - 5 - 30, UTC), "taken then, give or take the clocks"
    assert s.life.next_deadline() == T0 + 60
    assert s.started(new_session=False) == [Live()], "a resumed session backfills: wait for it"
    s.life.history_answered("m7", s.now)
    (take,) = s.effects()
    assert isinstance(take.ending, Succeeded) and take.ending.result.message_id == "m7"
    assert s.machine.calls == [] and s.life.sought is None and s.life.next_deadline() is None


def test_an_adopted_message_absent_from_the_whole_backfill_is_sent() -> None:
    s = adopted()
    s.started(new_session=False)
    s.life.history_answered(None, s.now)
    assert s.life.waits_for_history_end and s.machine.calls == [], "another page may still hold it"
    s.life.history_over(s.now)
    assert s.machine.calls == [("send_text", "hi")] and s.effects() == []
    done = ending(s.event(GuestMessageConfirmed(tracing_id="t1", message_id="m8")))
    assert isinstance(done, Succeeded) and done.result.message_id == "m8"


@pytest.mark.parametrize("how", ["new session", "backfill failed", "no answer in time"])
def test_an_adopted_message_is_sent_when_history_cannot_settle_it(how: str) -> None:
    s = adopted(last_own_id=None)
    if how == "new session":
        s.started(new_session=True)  # a brand-new session cannot hold it
    elif how == "backfill failed":
        s.started(new_session=False)
        s.event(ProtocolError(reason="history fetch failed", code=503))
    else:
        s.life.timer(T0 + 59)
        assert s.machine.calls == []
        s.life.timer(T0 + 60)
    assert s.machine.calls == [("send_text", "hi")]


# --- relaying -----------------------------------------------------------------------------------------


def message(message_id: str, *, bot: bool = False) -> AgentMessage:
    return AgentMessage(message_id=message_id, text="hello", originating_entity="Bot" if bot else "Human")


def test_web_messaging_announces_the_agent_with_the_first_human_message_and_checkpoints_now_and_then() -> None:
    s = Session()
    (relay,) = s.event(message("b1", bot=True))
    assert [dedup for dedup, _ in relay.events] == ["m:b1"] and relay.events[0][1].sender == "bot"
    (relay,) = s.event(message("a1"))
    assert [dedup for dedup, _ in relay.events] == ["joined", "m:a1"]
    assert isinstance(relay.events[0][1], GuestAgentJoined) and isinstance(relay.events[1][1], GuestMessage)
    (relay,) = s.event(message("a2"))
    assert [dedup for dedup, _ in relay.events] == ["m:a2"]
    s.now = T0 + 61
    assert only(s.event(message("a3")), Checkpoint) == [Checkpoint()]
    assert only(s.event(message("a4")), Checkpoint) == []


def test_guest_chat_relays_joins_and_typing_as_they_come() -> None:
    s = Session("guestchat")
    (relay,) = s.event(message("a1"))
    assert [dedup for dedup, _ in relay.events] == ["m:a1"]
    (relay,) = s.event(AgentJoined(member_id="agent-1", display_name="Grace"))
    assert shape(relay) == [("joined:agent-1", {"session_key": "sk", "org": "o", "type": "guest.agent_joined",
                                                 "agent_name": "Grace"})]
    (relay,) = s.event(AgentTyping(sender_id="agent-1"))
    assert shape(relay) == [("", {"session_key": "sk", "org": "o", "type": "guest.typing"})]


# --- idle sessions (Genesys' default Messenger never tells the guest the agent ended) ----------------------------


def test_a_session_idle_for_the_limit_is_ended_by_the_system() -> None:
    s = Session(idle_end_s=300)
    s.live()
    assert s.life.next_deadline() == T0 + 300
    s.now = T0 + 200
    s.event(AgentMessage(message_id="m1", text="still there?", time="2026-01-01T00:03:20Z"))
    assert s.life.next_deadline() == T0 + 500  # a message either way starts the wait again
    s.life.timer(T0 + 499)
    assert ("end",) not in s.machine.calls
    s.life.timer(T0 + 500)
    assert s.machine.calls[-1] == ("end",)
    assert s.life.next_deadline() is None  # asked once
    [end] = [e for e in s.event(ConnectionClosed(reason="closed by guest", by_guest=True)) if isinstance(e, End)]
    assert end.by == "system" and "no message either way for 300 s" in end.reason


def test_without_an_idle_limit_a_quiet_session_stays() -> None:
    s = Session()
    s.live()
    assert s.life.next_deadline() is None
    s.life.timer(T0 + 10 * 86_400)
    assert ("end",) not in s.machine.calls


def test_an_agents_end_told_before_the_idle_end_stays_the_agents() -> None:
    s = Session(idle_end_s=60)
    s.live()
    s.life.timer(T0 + 60)
    s.event(ConversationDisconnected(read_only=True))
    [end] = [e for e in s.event(ConnectionClosed(reason="closed by guest", by_guest=True)) if isinstance(e, End)]
    assert end.by == "agent"
