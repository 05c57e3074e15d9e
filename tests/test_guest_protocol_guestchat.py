"""GuestChatSession without sockets or HTTP: REST intents are answered by the test, stream frames
are fed as text, time is a number.

Every REST request the machine asks for (the genesys.operations operation its intent names) is
validated against the platform contract (path, method, body) as it is drained, and every REST answer
given to it is validated before it is fed in. Stream frames name members by ``{id}`` only, as Genesys'
do: who a member is comes from the FetchMember answer.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from genesys.errors import GenesysConnectionError, GenesysError
from guest.events import (
    AgentJoined,
    AgentLeft,
    AgentMessage,
    AgentTyping,
    CloseSocket,
    Ended,
    GuestEvent,
    GuestMessageConfirmed,
    Intent,
    MessageRejected,
    OpenSocket,
    ProtocolError,
    RateLimited,
    Reconnecting,
    SessionStarted,
    UnknownFrame,
)
from guest.guestchat import (
    ChatRequest,
    CreateConversation,
    FetchHistory,
    FetchMember,
    GcState,
    GuestChatConfig,
    GuestChatSession,
    LeaveConversation,
    SendMessage,
    SendTyping,
)
from guest.guestchat_frames import parse_stream_frame
from tests.support.contract import validate_request, validate_response

ORG = "6f1d3c2b-0000-4000-8000-00000000a001"
DEPLOYMENT = "6f1d3c2b-0000-4000-8000-00000000d001"
CID = "3ba4fee3-4a00-4d72-b080-772eebc6dd27"
GUEST = "da410cc0-8371-468e-826c-b1f5bdcff8c3"
AGENT = "a9e1c0de-0000-4000-8000-0000000a9e17"
AGENT2 = "b9e1c0de-0000-4000-8000-0000000b9e17"
T0 = 1_767_225_600.0


def make_jwt(exp: float) -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    claims = {"data": {"conv": CID, "did": DEPLOYMENT, "sub": GUEST}, "iss": "urn:purecloud:webchat", "exp": int(exp)}
    return f"{b64({'alg': 'RS256'})}.{b64(claims)}.c2lnbmF0dXJl"


JWT = make_jwt(T0 + 20 * 3600)
STREAM_URI = f"wss://carrierpigeon.mypurecloud.com/v1/token/{JWT}"


def wire_body(request: ChatRequest) -> Any:
    """The JSON body the request's operation sends (None without one)."""
    body = request.operation.body
    return body.to_wire() if body is not None else None


def iso(t: float) -> str:
    from guest.common import iso_time

    return iso_time(t)


# --- stream frames --------------------------------------------------------------------------------


def stream(topic: str, kind: str | None, body: dict[str, Any]) -> str:
    frame: dict[str, Any] = {"topicName": topic, "version": "2", "eventBody": body}
    if kind is not None:
        frame["metadata"] = {"CorrelationId": "0e6c2a4e-1111-4000-8000-000000000000", "type": kind}
    return json.dumps(frame)


def member_change(member_id: str, state: str, t: float, role: str | None = None) -> str:
    """``role``: a frame that (unlike Genesys') says who the member is; the machine must not believe it."""
    member: dict[str, Any] = {"id": member_id, "state": state}
    if role:
        member["role"] = role
    body = {"conversation": {"id": CID}, "member": member, "timestamp": iso(t)}
    return stream(f"v2.conversations.chats.{CID}.members", "member-change", body)


def chat_body(msg_id: str, sender: str, text: str, t: float, body_type: str = "standard") -> dict[str, Any]:
    return {
        "id": msg_id,
        "conversation": {"id": CID},
        "sender": {"id": sender},
        "body": text,
        "bodyType": body_type,
        "timestamp": iso(t),
    }


def chat_message(msg_id: str, sender: str, text: str, t: float, body_type: str = "standard") -> str:
    return stream(f"v2.conversations.chats.{CID}.messages", "message", chat_body(msg_id, sender, text, t, body_type))


def typing_indicator(sender: str, t: float) -> str:
    body = {"id": "ty-1", "conversation": {"id": CID}, "sender": {"id": sender}, "timestamp": iso(t)}
    return stream(f"v2.conversations.chats.{CID}.messages", "typing-indicator", body)


HEARTBEAT = json.dumps({"topicName": "channel.metadata", "eventBody": {"message": "WebSocket Heartbeat"}})


# --- harness --------------------------------------------------------------------------------------


class Harness:
    def __init__(self, **config: Any) -> None:
        self.now = T0
        counter = itertools.count(1)
        self.session = GuestChatSession(
            GuestChatConfig(
                organization_id=ORG,
                deployment_id=DEPLOYMENT,
                queue_name="Support",
                display_name="Ada Lovelace",
                custom_fields={"crm_id": "C-77"},
                **config,
            ),
            rng=random.Random(3),
            new_id=lambda: f"req-{next(counter)}",
        )
        self.events: list[GuestEvent] = []
        self.intents: list[Intent] = []
        self._stale: set[float] = set()
        self.requests: list[ChatRequest] = []

    def drain(self) -> None:
        for intent in self.session.intents_to_run():
            if isinstance(intent, ChatRequest):
                validate_request(intent.method, intent.path, wire_body(intent))
                self.requests.append(intent)
            self.intents.append(intent)
        self.events += self.session.events_received()

    def pop(self, kind: type) -> Any:
        for intent in self.intents:
            if isinstance(intent, kind):
                self.intents.remove(intent)
                return intent
        raise AssertionError(f"no {kind.__name__} among {self.intents}")

    def pending(self, kind: type) -> list[Any]:
        return [i for i in self.intents if isinstance(i, kind)]

    def ok(self, request: ChatRequest, body: dict[str, Any] | None, status: int = 200) -> None:
        validate_response(request.method, request.path, status, body)
        self.session.rest_succeeded(request.request_id, self.now, json.dumps(body) if body is not None else None)
        self.drain()

    def fail(self, request: ChatRequest, status: int, code: str, retry_after: float | None = None) -> None:
        from genesys.errors import RateLimitInfo

        body = {"message": code, "code": code, "status": status, "contextId": "ctx", "details": [], "errors": []}
        validate_response(request.method, request.path, status, body)
        error = GenesysError(status=status, code=code, rate_limit=RateLimitInfo(retry_after_s=retry_after))
        self.session.rest_failed(request.request_id, self.now, error)
        self.drain()

    def recv(self, frame: str) -> None:
        self.session.receive_text(frame, self.now)
        self.drain()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.session.timer(self.now)
        self.drain()

    def run_until(self, seconds: float, *, heartbeats: bool = True) -> None:
        end = self.now + seconds
        for _ in range(100_000):
            deadline = self.session.next_deadline()
            if deadline is None or deadline > end:
                break
            # A deadline at or before the current time twice in a row means timer() cannot act on
            # it: the worker would spin. Every reported deadline must be one timer() clears.
            assert deadline > self.now or deadline not in self._stale, f"timer spins at {deadline}"
            self._stale = {deadline} if deadline <= self.now else set()
            self.now = max(self.now, deadline)
            if heartbeats and self.session.state is GcState.ACTIVE:
                self.session.receive_text(HEARTBEAT, self.now)
            self.session.timer(self.now)
            self.drain()
        else:
            raise AssertionError("timer never settles")
        self.now = end
        self.session.timer(self.now)
        self.drain()

    def take_events(self) -> list[GuestEvent]:
        events, self.events = self.events, []
        return events

    def send(self, text: str) -> str:
        tracing_id = self.session.send_text(text, self.now)
        self.drain()
        return tracing_id

    def created(self) -> None:
        """start -> create -> attach the stream (guest not yet CONNECTED)."""
        self.session.start(self.now)
        self.drain()
        create = self.pop(CreateConversation)
        body = {
            "id": CID,
            "jwt": JWT,
            "eventStreamUri": STREAM_URI,
            "member": {"id": GUEST, "role": "CUSTOMER", "state": "ALERTING", "displayName": "Ada Lovelace"},
        }
        self.ok(create, body)
        assert self.pop(OpenSocket).uri.get_secret_value() == STREAM_URI
        self.session.connection_made(self.now)
        self.drain()

    def live(self) -> None:
        self.created()
        self.recv(member_change(GUEST, "CONNECTED", self.now))

    def answer_send(self, request: SendMessage, msg_id: str) -> None:
        body = chat_body(msg_id, GUEST, request.text, self.now)
        body["sender"] = {"id": GUEST, "role": "CUSTOMER"}
        self.ok(request, body)

    def agent_joins(self, agent: str = AGENT) -> None:
        """ALERTING, CONNECTED, and the member lookup the first CONNECTED of a stranger asks for."""
        self.recv(member_change(agent, "ALERTING", self.now))
        self.recv(member_change(agent, "CONNECTED", self.now))
        for lookup in self.pending(FetchMember):
            self.intents.remove(lookup)
            self.ok(lookup, {"id": lookup.member_id, "role": "AGENT", "state": "CONNECTED"})


def of_type(events: list[GuestEvent], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    harness.live()
    harness.take_events()
    return harness


# --- happy path ---------------------------------------------------------------------------------


def test_full_chat() -> None:
    h = Harness()
    h.session.start(h.now)
    h.drain()
    create = h.pop(CreateConversation)
    assert create.path == "/api/v2/webchat/guest/conversations" and create.jwt is None
    assert wire_body(create) == {
        "organizationId": ORG,
        "deploymentId": DEPLOYMENT,
        "routingTarget": {"targetType": "QUEUE", "targetAddress": "Support"},
        "memberInfo": {"displayName": "Ada Lovelace", "customFields": {"crm_id": "C-77"}},
    }
    first = h.send("hello, anyone there?")  # before the stream is attached: must wait
    h.ok(create, {"id": CID, "jwt": JWT, "eventStreamUri": STREAM_URI, "member": {"id": GUEST, "role": "CUSTOMER"}})
    assert h.take_events() == [SessionStarted(new_session=True, conversation_id=CID)]
    assert h.pop(OpenSocket).uri.get_secret_value() == STREAM_URI
    h.session.connection_made(h.now)
    h.drain()
    assert h.pending(SendMessage) == []  # attached, but the guest is not CONNECTED yet
    h.recv(member_change(GUEST, "CONNECTED", h.now))
    send = h.pop(SendMessage)
    assert send.path == f"/api/v2/webchat/guest/conversations/{CID}/members/{GUEST}/messages"
    assert wire_body(send) == {"body": "hello, anyone there?", "bodyType": "standard"}
    assert send.jwt.get_secret_value() == JWT and send.tracing_id == first
    h.recv(chat_message("g1", GUEST, "hello, anyone there?", h.now))  # stream echo before the answer
    h.answer_send(send, "g1")
    assert h.take_events() == [GuestMessageConfirmed(tracing_id=first, message_id="g1")]

    h.recv(member_change(AGENT, "ALERTING", h.now))
    h.recv(member_change(AGENT, "CONNECTED", h.now))
    member = h.pop(FetchMember)  # the stream did not say who this is
    assert member.path.endswith(f"/members/{AGENT}")
    h.ok(member, {"id": AGENT, "displayName": "Agent Smith", "role": "AGENT", "state": "CONNECTED"})
    h.recv(chat_message("j1", AGENT, "", h.now, body_type="member-join"))
    h.recv(typing_indicator(AGENT, h.now))
    h.recv(chat_message("a1", AGENT, "Hi Ada, how can I help?", h.now + 0.1))
    h.recv(HEARTBEAT)
    h.run_until(1.5)
    events = h.take_events()
    assert events[:2] == [AgentJoined(member_id=AGENT, display_name="Agent Smith"), AgentTyping(sender_id=AGENT)]
    assert [(e.message_id, e.text, e.sender_id) for e in of_type(events, AgentMessage)] == [
        ("a1", "Hi Ada, how can I help?", AGENT)
    ]
    assert len(of_type(events, AgentJoined)) == 1

    h.session.end(h.now)
    h.drain()
    leave = h.pop(LeaveConversation)
    assert (leave.method, leave.path) == ("DELETE", f"/api/v2/webchat/guest/conversations/{CID}/members/{GUEST}")
    h.ok(leave, None, status=204)
    assert h.take_events() == [Ended(by="guest", reason="guest left")]
    assert h.pop(CloseSocket)
    h.recv(member_change(GUEST, "DISCONNECTED", h.now))
    assert h.take_events() == [] and h.session.state is GcState.ENDED


def test_answers_that_name_members_by_id_alone_are_read() -> None:
    """Genesys' create answer is ``member: {id}`` and a message's sender ``{id}``, though the contract
    requires ``role``: they must read (the harness's contract check would refuse them, so they go in
    directly)."""
    h = Harness()
    h.session.start(h.now)
    h.drain()
    created = {"id": CID, "jwt": JWT, "eventStreamUri": STREAM_URI, "member": {"id": GUEST}}
    h.session.rest_succeeded(h.pop(CreateConversation).request_id, h.now, json.dumps(created))
    h.drain()
    assert h.take_events() == [SessionStarted(new_session=True, conversation_id=CID)]
    h.session.connection_made(h.now)
    h.recv(member_change(GUEST, "CONNECTED", h.now))
    tracing_id = h.send("hi")
    send = h.pop(SendMessage)
    h.session.rest_succeeded(send.request_id, h.now, json.dumps(chat_body("g1", GUEST, "hi", h.now)))
    h.drain()
    assert h.take_events() == [GuestMessageConfirmed(tracing_id=tracing_id, message_id="g1")]


@pytest.mark.parametrize("missing", ["id", "jwt", "eventStreamUri", "member"])
def test_a_create_answer_missing_a_part_is_not_taken_and_the_create_is_asked_again(missing: str) -> None:
    h = Harness()
    h.session.start(h.now)
    h.drain()
    created = {"id": CID, "jwt": JWT, "eventStreamUri": STREAM_URI, "member": {"id": GUEST, "role": "CUSTOMER"}}
    del created[missing]
    h.ok(h.pop(CreateConversation), created)
    assert [e.reason for e in of_type(h.take_events(), ProtocolError)] == ["CreateConversation answer did not parse"]
    assert h.pending(OpenSocket) == [] and h.session.conversation_id is None
    h.run_until(3)
    assert h.pop(CreateConversation)


def test_not_active_yet_is_retried_not_failed(h: Harness) -> None:
    tid = h.send("early bird")
    first = h.pop(SendMessage)
    h.fail(first, 400, "chat.error.conversation.state")
    assert h.take_events() == []
    assert h.pending(SendMessage) == []
    h.run_until(5)
    second = h.pop(SendMessage)
    assert second.tracing_id == tid
    h.answer_send(second, "g1")
    assert h.take_events() == [GuestMessageConfirmed(tracing_id=tid, message_id="g1")]


def test_not_active_gives_up_eventually(h: Harness) -> None:
    tid = h.send("never routed")
    while h.session.next_deadline() is not None and not of_type(h.events, MessageRejected):
        for request in h.pending(SendMessage):
            h.intents.remove(request)
            h.fail(request, 400, "chat.error.conversation.state")
        h.run_until(10)
    [rejected] = of_type(h.take_events(), MessageRejected)
    assert rejected.tracing_id == tid and h.now - T0 >= 120


def test_send_anyway_after_grace_when_connected_never_shows() -> None:
    h = Harness()
    h.created()
    h.send("hello")
    assert h.pending(SendMessage) == []
    h.run_until(10)
    assert len(h.pending(SendMessage)) == 1


def test_a_role_or_name_on_the_stream_is_not_believed_the_member_is_fetched(h: Harness) -> None:
    frame = json.loads(member_change(AGENT, "CONNECTED", h.now, role="AGENT"))
    frame["eventBody"]["member"]["displayName"] = "Not Trusted"
    h.recv(json.dumps(frame))
    assert h.take_events() == []  # not an agent until Genesys says so
    lookup = h.pop(FetchMember)
    assert lookup.member_id == AGENT and lookup.method == "GET"
    h.ok(lookup, {"id": AGENT, "displayName": "Agent Smith", "role": "AGENT", "state": "CONNECTED"})
    assert h.take_events() == [AgentJoined(member_id=AGENT, display_name="Agent Smith")]
    h.recv(member_change(AGENT, "CONNECTED", h.now))  # known now: no second lookup, no second join
    assert h.pending(FetchMember) == [] and h.take_events() == []


def test_a_member_join_line_alone_fetches_the_member(h: Harness) -> None:
    h.recv(chat_message("j1", AGENT, "", h.now, body_type="member-join"))
    h.run_until(2)
    h.ok(h.pop(FetchMember), {"id": AGENT, "role": "AGENT", "state": "CONNECTED"})
    assert h.take_events() == [AgentJoined(member_id=AGENT)]


def test_acd_member_is_not_an_agent(h: Harness) -> None:
    h.recv(member_change("acd-1", "CONNECTED", h.now, role="AGENT"))  # a role on the stream changes nothing
    h.ok(h.pop(FetchMember), {"id": "acd-1", "role": "ACD", "state": "CONNECTED"})
    assert h.take_events() == [] and h.pending(FetchMember) == []


def test_a_failed_member_lookup_is_reported_and_asked_again_at_the_next_sign(h: Harness) -> None:
    h.recv(member_change(AGENT, "CONNECTED", h.now))
    h.fail(h.pop(FetchMember), 503, "service.unavailable")
    assert [e.reason for e in of_type(h.take_events(), ProtocolError)] == ["member lookup failed"]
    h.recv(chat_message("j1", AGENT, "", h.now, body_type="member-join"))
    h.run_until(2)
    h.ok(h.pop(FetchMember), {"id": AGENT, "role": "AGENT", "state": "CONNECTED"})
    assert h.take_events() == [AgentJoined(member_id=AGENT)]


# --- inbound: dedup, order, typing --------------------------------------------------------------


def test_duplicate_and_out_of_order_messages(h: Harness) -> None:
    h.agent_joins()
    h.take_events()
    h.recv(chat_message("a2", AGENT, "second", h.now + 2))
    h.recv(chat_message("a1", AGENT, "first", h.now + 1))
    h.recv(chat_message("a2", AGENT, "second", h.now + 2))
    h.recv(chat_message("n1", "acd-1", "Welcome! An agent will be with you shortly.", h.now, body_type="notice"))
    h.run_until(2)
    assert [e.message_id for e in of_type(h.take_events(), AgentMessage)] == ["n1", "a1", "a2"]


@settings(max_examples=40, deadline=None, database=None)
@given(st.permutations(list(range(12))), st.lists(st.integers(0, 11), max_size=6))
def test_property_each_message_once_in_order(order: list[int], repeats: list[int]) -> None:
    h = Harness()
    h.live()
    for n in order + repeats:
        h.recv(chat_message(f"m{n:02}", AGENT, f"text {n}", T0 - 100 + n))
    h.run_until(2)
    assert [e.message_id for e in of_type(h.take_events(), AgentMessage)] == [f"m{n:02}" for n in range(12)]


def test_own_messages_and_other_conversations_are_not_relayed(h: Harness) -> None:
    h.recv(chat_message("g9", GUEST, "typed by us", h.now))
    other = stream("v2.conversations.chats.other-conv.messages", "message", chat_body("x", AGENT, "not ours", h.now))
    h.recv(other)
    h.recv(typing_indicator(GUEST, h.now))
    h.run_until(2)
    assert h.take_events() == []


def test_typing_throttle(h: Harness) -> None:
    sent = []
    for dt in (0, 1, 4, 0.5):  # +0, +1, +5, +5.5
        h.advance(dt)
        sent.append(h.session.send_typing(h.now))
        h.drain()
        for request in h.pending(SendTyping):
            h.intents.remove(request)
            sender = {"id": GUEST, "role": "CUSTOMER"}
            h.ok(request, {"id": "t", "conversation": {"id": CID}, "sender": sender, "timestamp": iso(h.now)})
    assert sent == [True, False, True, False]


def test_unknown_topic_and_garbage(h: Harness) -> None:
    h.recv(stream("v2.users.123.presence", "presence", {"x": 1}))
    h.recv(stream(f"v2.conversations.chats.{CID}.messages", "reaction", {"x": 1}))
    h.recv("{{{")
    events = h.take_events()
    assert events[:2] == [
        UnknownFrame(kind="v2.users.123.presence"),
        UnknownFrame(kind=f"v2.conversations.chats.{CID}.messages"),
    ]
    assert isinstance(events[2], ProtocolError)


def test_lowercase_correlation_id_accepted() -> None:
    frame = json.loads(member_change(AGENT, "CONNECTED", T0))
    frame["metadata"] = {"correlationId": "x", "type": "member-change"}
    assert parse_stream_frame(json.dumps(frame)).kind == "MemberChange"


# --- lifecycle: transfer, end -------------------------------------------------------------------


def test_agent_disconnect_while_guest_connected_is_a_transfer(h: Harness) -> None:
    h.agent_joins()
    h.recv(member_change(AGENT, "DISCONNECTED", h.now, role="AGENT"))
    h.agent_joins(AGENT2)
    assert h.take_events() == [AgentJoined(member_id=AGENT), AgentLeft(member_id=AGENT), AgentJoined(member_id=AGENT2)]
    assert h.session.state is GcState.ACTIVE


def test_conversation_ended_by_agent(h: Harness) -> None:
    h.agent_joins()
    tid = h.send("are you there?")
    queued = h.send("hello?")
    h.recv(chat_message("a1", AGENT, "Bye now", h.now))
    h.recv(member_change(AGENT, "DISCONNECTED", h.now))
    h.recv(member_change(GUEST, "DISCONNECTED", h.now))
    events = h.take_events()
    assert of_type(events, AgentMessage)[0].text == "Bye now"  # released, not lost, before the end
    assert Ended(by="agent", reason="guest disconnected") in events
    # The queued message will never go; the one in flight is settled by its own REST answer.
    assert [e.tracing_id for e in of_type(events, MessageRejected)] == [queued]
    h.answer_send(h.pop(SendMessage), "g1")
    assert of_type(h.take_events(), GuestMessageConfirmed)[0].tracing_id == tid


def test_guest_member_leave_line_ends(h: Harness) -> None:
    h.recv(chat_message("l1", GUEST, "", h.now, body_type="member-leave"))
    h.run_until(2)
    assert h.take_events() == [Ended(by="agent", reason="guest disconnected")]


def test_leave_waits_for_queued_messages(h: Harness) -> None:
    h.send("last words")
    h.session.end(h.now)
    h.drain()
    assert h.pending(LeaveConversation) == []
    h.answer_send(h.pop(SendMessage), "g1")
    h.ok(h.pop(LeaveConversation), None, status=204)
    assert of_type(h.take_events(), Ended) == [Ended(by="guest", reason="guest left")]


def test_leave_when_already_gone(h: Harness) -> None:
    h.session.end(h.now)
    h.drain()
    h.fail(h.pop(LeaveConversation), 400, "chat.error.member.state")
    assert h.take_events() == [Ended(by="guest", reason="guest left")]


def test_leave_retried_on_server_error(h: Harness) -> None:
    h.session.end(h.now)
    h.drain()
    h.fail(h.pop(LeaveConversation), 503, "service.unavailable")
    assert h.take_events() == []
    h.run_until(5)
    h.ok(h.pop(LeaveConversation), None, status=204)
    assert of_type(h.take_events(), Ended)


def test_end_before_start() -> None:
    h = Harness()
    h.session.end(h.now)
    h.drain()
    assert h.take_events() == [Ended(by="guest", reason="ended before start")] and h.intents == []


# --- failures -----------------------------------------------------------------------------------


def test_create_refused_ends_with_reason() -> None:
    h = Harness()
    h.session.start(h.now)
    h.drain()
    h.fail(h.pop(CreateConversation), 400, "chat.error.invalid.queue")
    [ended] = h.take_events()
    assert ended.by == "system" and "chat.error.invalid.queue" in ended.reason


def test_create_retried_on_503() -> None:
    h = Harness()
    h.session.start(h.now)
    h.drain()
    h.fail(h.pop(CreateConversation), 503, "chat.error.service.unavailable")
    h.run_until(3)
    assert h.pop(CreateConversation)


def test_rate_limited_send_held_and_resent_once(h: Harness) -> None:
    a = h.send("a")
    h.send("b")
    h.fail(h.pop(SendMessage), 429, "too.many.requests.retry.after", retry_after=4)
    assert h.take_events() == [RateLimited(retry_after=4)]
    h.advance(3.9)
    assert h.pending(SendMessage) == []
    h.advance(0.2)
    again = h.pop(SendMessage)
    assert again.tracing_id == a and h.pending(SendMessage) == []
    h.answer_send(again, "g1")
    assert h.pop(SendMessage).text == "b"


def test_unknown_outcome_settled_by_stream_echo(h: Harness) -> None:
    tid = h.send("did it go?")
    request = h.pop(SendMessage)
    h.session.rest_failed(request.request_id, h.now, GenesysConnectionError("reset"))
    h.drain()
    h.advance(0.5)
    h.recv(chat_message("g1", GUEST, "did it go?", h.now - 0.4))  # it did
    h.run_until(10)
    assert h.pending(SendMessage) == []
    assert h.take_events() == [GuestMessageConfirmed(tracing_id=tid, message_id="g1")]


def test_unknown_outcome_resent_when_no_echo(h: Harness) -> None:
    tid = h.send("did it go?")
    request = h.pop(SendMessage)
    h.fail(request, 504, "request.timeout")
    h.run_until(10)
    assert h.pop(SendMessage).tracing_id == tid


def test_refused_message_rejected(h: Harness) -> None:
    tid = h.send("x")
    h.fail(h.pop(SendMessage), 400, "chat.error.bad.request")
    assert h.take_events() == [
        MessageRejected(tracing_id=tid, code="chat.error.bad.request", reason="message refused (400)")
    ]


def test_too_long_rejected_locally(h: Harness) -> None:
    tid = h.send("x" * 4001)
    assert of_type(h.take_events(), MessageRejected)[0].tracing_id == tid
    assert h.pending(SendMessage) == []


# --- dead stream, reconnect, backfill -----------------------------------------------------------


def test_silent_stream_reconnects_same_uri_and_backfills(h: Harness) -> None:
    h.agent_joins()
    h.recv(chat_message("a1", AGENT, "one", h.now))
    h.run_until(30)
    assert [e.message_id for e in of_type(h.take_events(), AgentMessage)] == ["a1"]
    h.run_until(61, heartbeats=False)  # silence
    assert CloseSocket(reason="no heartbeat") in h.intents
    [event] = of_type(h.take_events(), Reconnecting)
    h.run_until(event.delay + 0.01, heartbeats=False)
    assert h.pop(OpenSocket).uri.get_secret_value() == STREAM_URI
    h.session.connection_made(h.now)
    h.drain()
    history = h.pop(FetchHistory)
    assert history.operation.params == {"sortOrder": "ascending", "maxResults": 100, "after": "a1"}
    h.recv(chat_message("a4", AGENT, "four (live)", h.now))  # held until the backfill lands
    h.run_until(2)
    assert of_type(h.take_events(), AgentMessage) == []
    entities = [chat_body(f"a{n}", AGENT, text, h.now - 10 + n) for n, text in ((1, "one"), (2, "two"), (3, "three"))]
    for entity in entities:
        entity["sender"]["role"] = "AGENT"
    h.ok(history, {"entities": entities, "pageSize": 100})
    h.run_until(2)
    assert [e.text for e in of_type(h.take_events(), AgentMessage)] == ["two", "three", "four (live)"]


def test_a_backfill_answered_503_is_asked_again_and_nothing_is_lost(h: Harness) -> None:
    h.agent_joins()
    h.recv(chat_message("a1", AGENT, "one", h.now))
    h.run_until(2)
    h.take_events()
    h.session.connection_lost(h.now)
    h.drain()
    h.run_until(2, heartbeats=False)
    h.pop(OpenSocket)
    h.session.connection_made(h.now)
    h.drain()
    h.fail(h.pop(FetchHistory), 503, "service.unavailable", retry_after=1)
    missed_at = h.now - 1  # "two" was said while the stream was down
    h.recv(chat_message("a3", AGENT, "three (live)", h.now))  # still held: the gap is not filled yet
    assert of_type(h.take_events(), ProtocolError) == []
    h.run_until(3)
    again = h.pop(FetchHistory)
    assert again.operation.params["after"] == "a1"
    entity = chat_body("a2", AGENT, "two", missed_at)
    entity["sender"]["role"] = "AGENT"
    h.ok(again, {"entities": [entity], "pageSize": 100})
    h.run_until(2)
    assert [e.text for e in of_type(h.take_events(), AgentMessage)] == ["two", "three (live)"]


def test_full_history_page_fetches_the_next() -> None:
    h2 = Harness(history_max_results=2)
    h2.live()
    h2.session.connection_lost(h2.now)
    h2.drain()
    h2.run_until(2, heartbeats=False)
    h2.pop(OpenSocket)
    h2.session.connection_made(h2.now)
    h2.drain()
    first = h2.pop(FetchHistory)
    page = [chat_body(f"m{n}", AGENT, f"t{n}", h2.now - 5 + n) for n in range(2)]
    for entity in page:
        entity["sender"]["role"] = "AGENT"
    h2.ok(first, {"entities": page})
    assert h2.pop(FetchHistory).after == "m1"


def test_socket_closing_reconnects_at_once(h: Harness) -> None:
    h.recv(json.dumps({"topicName": "v2.system.socket_closing", "eventBody": {}}))
    assert h.take_events() == [Reconnecting(attempt=1, delay=0.0)]
    h.advance(0)
    assert h.pop(OpenSocket)


def test_expired_jwt_ends_instead_of_reconnecting() -> None:
    h = Harness()
    h.live()
    h.now = T0 + 21 * 3600
    h.session.connection_lost(h.now)
    h.drain()
    assert h.take_events()[-1] == Ended(by="system", reason="guest chat JWT expired")


def test_reconnect_gives_up(h: Harness) -> None:
    h.session.connection_lost(h.now)
    h.drain()
    while h.session.state is not GcState.ENDED:
        h.run_until(h.session.next_deadline() - h.now + 0.01, heartbeats=False)
        if h.pending(OpenSocket):
            h.pop(OpenSocket)
            h.session.connection_lost(h.now)
            h.drain()
    assert h.take_events()[-1] == Ended(by="system", reason="event stream reconnect timed out")


# --- privacy ------------------------------------------------------------------------------------


def test_jwt_and_text_stay_out_of_reprs(h: Harness) -> None:
    h.send("my card number is 4111")
    h.recv(chat_message("a1", AGENT, "agent secret reply", h.now))
    h.run_until(2)
    dumped = repr(h.take_events()) + repr(h.intents) + repr(h.requests) + repr(h.session.config)
    for secret in (JWT, "4111", "agent secret reply", "C-77"):
        assert secret not in dumped


def test_config_requires_the_routing_fields() -> None:
    with pytest.raises(ValidationError):
        GuestChatConfig(organization_id=ORG, deployment_id=DEPLOYMENT, queue_name="", display_name="x")
