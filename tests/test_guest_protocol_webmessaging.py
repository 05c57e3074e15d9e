"""WebMessagingSession without sockets: a scripted server feeds frames, time is a number.

Every frame the machine emits is validated against the Web Messaging contract as it is drained, and
every server frame built here is validated against the contract before it is fed in.
"""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from emulator.state.model import Conversation, Kind, Participant, StoredMessage
from emulator.state.webmessaging import SessionEvent
from emulator.ws import webmessaging_frames as emulated
from genesys.errors import GenesysError, GenesysTimeout, RateLimitInfo
from genesys.models import WebMessagingMessage, WebMessagingMessageEntityList
from genesys.wire import GuestJwt
from guest.common import HISTORY_RETRIES, Backoff, RecentIds, parse_time
from guest.events import (
    AgentMessage,
    AgentTyping,
    CloseSocket,
    ConnectionClosed,
    ConversationDisconnected,
    GuestEvent,
    GuestMessageConfirmed,
    Intent,
    MessageRejected,
    OpenSocket,
    ProtocolError,
    RateLimited,
    Reconnecting,
    SessionCleared,
    SessionExpired,
    SessionStarted,
    UnknownFrame,
)
from guest.ownmessage import OwnMessage
from guest.webmessaging import (
    FetchMessageHistory,
    RelayCheckpoint,
    WebMessagingConfig,
    WebMessagingSession,
    WmState,
    missed_outbound,
)
from guest.webmessaging_frames import HEALTH_CHECK_ID, StructuredMessage, parse_server_frame
from schemas.commands import GuestStart
from tests.support.contract import PLATFORM, WEBMESSAGING, validate_definition, validate_response
from workers.guest.settings import GuestSettings
from workers.guest.webmessaging import WebMessagingAdapter

TOKEN = "5b0e9d7c-3f7e-4f4e-9a51-6d3b2c1a0f99"
DEPLOYMENT = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
REQUEST_DEFINITION = {
    "configureSession": "ConfigureSessionRequest",
    "onMessage": "SendMessageRequest",
    "echo": "SendEchoRequest",
    "getJwt": "GetJwtRequest",
    "closeSession": "CloseSessionRequest",
}


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- server frames (each validated against the contract) -----------------------------------------


def envelope(cls: str, body: Any, *, type_: str = "message", code: int = 200, tracing_id: str | None = None) -> str:
    frame: dict[str, Any] = {"type": type_, "class": cls, "code": code, "body": body}
    if tracing_id is not None:
        frame["tracingId"] = tracing_id
    if isinstance(body, dict):
        validate_definition(frame, "BaseMessage", contract=WEBMESSAGING)
        if cls not in ("string", "Unknown") and cls in _definitions():
            validate_definition(body, cls, contract=WEBMESSAGING)
    return json.dumps(frame)


def _definitions() -> set[str]:
    from tests.support.contract import load

    return set(load(WEBMESSAGING)["definitions"])


def session_response(
    *, new_session: bool = True, read_only: bool = False, connected: bool = True, expires: float | None = None
) -> str:
    body: dict[str, Any] = {
        "connected": connected,
        "newSession": new_session,
        "readOnly": read_only,
        "clearedExistingSession": False,
        "allowedMedia": {"inbound": {"fileTypes": [{"type": "*/*"}], "maxFileSizeKB": 10240}},
        "blockedExtensions": [".exe", ".bat"],
        "maxCustomDataBytes": 2048,
        "durationSeconds": 259200,
        "expirationDate": expires if expires is not None else T0 + 259200,
    }
    return envelope("SessionResponse", body, type_="response")


def agent_body(
    msg_id: str, text: str, t: float, *, message_id: str | None = None, bot: bool = False, **extra: Any
) -> dict[str, Any]:
    channel: dict[str, Any] = {"time": iso(t), "type": "Private", "from": {"nickname": "Agent Smith"}}
    if message_id is not None:
        channel["messageId"] = message_id
    body = {
        "id": msg_id,
        "type": "Text",
        "text": text,
        "direction": "Outbound",
        "channel": channel,
        "metadata": {"correlationId": "c0ffee00-0000-4000-8000-000000000000"},
        "originatingEntity": "Bot" if bot else "Human",
        **extra,
    }
    validate_definition(body, "StructuredMessage", contract=WEBMESSAGING)
    return body


def agent_message(msg_id: str, text: str, t: float, **kw: Any) -> str:
    return envelope("StructuredMessage", agent_body(msg_id, text, t, **kw))


def own_echo(tracing_id: str | None, text: str, msg_id: str, t: float) -> str:
    body = {
        "id": msg_id,
        "type": "Text",
        "text": text,
        "direction": "Inbound",
        "channel": {"time": iso(t), "messageId": f"mid-{msg_id}", "type": "Private"},
        "metadata": {},
    }
    return envelope("StructuredMessage", body, tracing_id=tracing_id)


def event_message(msg_id: str, t: float, events: list[dict[str, Any]], metadata: dict[str, str] | None = None) -> str:
    body = {
        "id": msg_id,
        "type": "Event",
        "direction": "Outbound",
        "channel": {"time": iso(t), "messageId": f"mid-{msg_id}"},
        "events": events,
        "metadata": metadata or {},
    }
    return envelope("StructuredMessage", body)


def error_text(code: int, text: str, tracing_id: str | None = None) -> str:
    # class "string" carries a bare-text body, which BaseMessage (body: object) does not describe;
    # these mirror the frames in the transport SDK's Response.kt fixtures instead.
    return envelope("string", text, type_="response", code=code, tracing_id=tracing_id)


def too_many_requests(retry_after: int) -> str:
    body = {
        "name": "TooManyRequestsError",
        "message": "Message rate too high for this session",
        "errorCode": 4029,
        "errorMessage": "Message rate too high for this session",
        "retryAfter": retry_after,
    }
    return envelope("TooManyRequestsErrorMessage", body, type_="response", code=429)


def history_entity(msg_id: str, text: str, t: float, *, direction: str = "Outbound", **extra: Any) -> dict[str, Any]:
    entity = {
        "id": msg_id,
        "channel": {"time": iso(t), "messageId": f"mid-{msg_id}"},
        "type": "Text",
        "text": text,
        "direction": direction,
        "originatingEntity": "Human",
        **extra,
    }
    validate_definition(entity, "WebMessagingMessage", contract=PLATFORM)
    return entity


def history_page(entities: list[dict[str, Any]], page: int = 1, page_count: int = 1) -> str:
    body = {"entities": entities, "pageSize": 25, "pageNumber": page, "total": len(entities), "pageCount": page_count}
    validate_response("GET", "/api/v2/webmessaging/messages", 200, body)
    return json.dumps(body)


# --- harness ------------------------------------------------------------------------------------


class Harness:
    """Drives one session like the guest worker would, recording everything it emits."""

    def __init__(self, **config: Any) -> None:
        self.now = T0
        counter = itertools.count(1)
        self.session = WebMessagingSession(
            WebMessagingConfig(deployment_id=DEPLOYMENT, token=SecretStr(TOKEN), **config),
            rng=random.Random(7),
            new_id=lambda: f"tid-{next(counter)}",
        )
        self.sent: list[dict[str, Any]] = []
        self.sent_at: list[float] = []
        self.events: list[GuestEvent] = []
        self.intents: list[Intent] = []
        self._stale: set[float] = set()

    def drain(self) -> None:
        for text in self.session.data_to_send():
            frame = json.loads(text)
            validate_definition(frame, REQUEST_DEFINITION[frame["action"]], contract=WEBMESSAGING)
            self.sent.append(frame)
            self.sent_at.append(self.now)
        self.intents += self.session.intents_to_run()
        self.events += self.session.events_received()

    def recv(self, frame: str) -> None:
        self.session.receive_text(frame, self.now)
        self.drain()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.session.timer(self.now)
        self.drain()

    def run_until(self, seconds: float) -> None:
        """Call timer at every deadline up to now+seconds, like the worker's sleep loop."""
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

    def take_intents(self) -> list[Intent]:
        intents, self.intents = self.intents, []
        return intents

    def frames(self, action: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.sent if action is None or f["action"] == action]

    def last(self, action: str) -> dict[str, Any]:
        return self.frames(action)[-1]

    def send(self, text: str) -> str:
        tracing_id = self.session.send_text(text, self.now)
        self.drain()
        return tracing_id

    def connect(self, *, new_session: bool = True, **kw: Any) -> None:
        self.session.start(self.now)
        self.drain()
        assert self.take_intents() == [OpenSocket()]
        self.session.connection_made(self.now)
        self.drain()
        assert self.last("configureSession")["token"] == TOKEN
        self.recv(session_response(new_session=new_session, **kw))

    def texts(self) -> list[str]:
        return [f["message"]["text"] for f in self.frames("onMessage") if f["message"]["type"] == "Text"]


def of_type(events: list[GuestEvent], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    harness.connect()
    harness.take_events()
    return harness


# --- happy path ---------------------------------------------------------------------------------


def test_full_conversation() -> None:
    h = Harness()
    first = h.session.send_text("hi, I need help with order 42", h.now)  # queued before start
    h.session.start(h.now)
    h.drain()
    assert h.take_intents() == [OpenSocket()] and h.sent == []
    h.advance(0.2)
    h.session.connection_made(h.now)
    h.drain()
    configure = h.last("configureSession")
    assert configure == {
        "action": "configureSession",
        "token": TOKEN,
        "deploymentId": DEPLOYMENT,
        "tracingId": configure["tracingId"],
    }
    assert h.frames("onMessage") == []  # nothing before the session is configured
    h.recv(session_response())
    assert h.take_events() == [SessionStarted(new_session=True, resumed=False)]
    assert h.session.state is WmState.CONFIGURED

    sent = h.last("onMessage")
    assert sent["tracingId"] == first and sent["message"] == {"type": "Text", "text": "hi, I need help with order 42"}
    assert sent["time"] == iso(h.now)
    h.recv(own_echo(first, "hi, I need help with order 42", "e1", h.now))
    assert h.take_events() == [GuestMessageConfirmed(tracing_id=first, message_id="mid-e1")]

    h.recv(event_message("t1", h.now, [{"eventType": "Typing", "typing": {"type": "On", "duration": 5000}}]))
    assert h.take_events() == [AgentTyping(duration_ms=5000)]
    h.recv(agent_message("a1", "Hello, Smith here", h.now, message_id="m-a1"))
    assert h.take_events() == []  # held for the reorder window
    h.run_until(1.0)
    [message] = h.take_events()
    assert message == AgentMessage(
        message_id="m-a1", text="Hello, Smith here", time=message.time, originating_entity="Human"
    )

    h.session.end(h.now)
    h.drain()
    clear = h.last("onMessage")
    assert clear["message"] == {"type": "Event", "events": [{"eventType": "Presence", "presence": {"type": "Clear"}}]}
    assert h.session.state is WmState.CLOSING
    h.recv(envelope("SessionClearedEvent", {}))
    close = h.last("closeSession")
    assert close["closeAllConnections"] is True
    h.recv(envelope("SessionResponse", {"connected": False, "readOnly": False}, type_="response"))
    assert h.take_events() == [SessionCleared(), ConnectionClosed(reason="closed by guest", by_guest=True)]
    assert h.take_intents() == [CloseSocket(reason="closed by guest")]
    assert h.session.state is WmState.CLOSED and h.session.next_deadline() is None


def test_end_waits_for_queued_messages(h: Harness) -> None:
    a, b = h.send("one"), h.send("two")
    h.session.end(h.now)
    h.drain()
    assert h.texts() == ["one"] and h.frames("closeSession") == []
    h.recv(own_echo(a, "one", "e1", h.now))
    h.recv(own_echo(b, "two", "e2", h.now))
    assert h.texts() == ["one", "two"]
    assert h.last("onMessage")["message"]["type"] == "Event"  # the Clear, after both
    assert of_type(h.take_events(), MessageRejected) == []
    rejected = h.session.send_text("three", h.now)
    h.drain()
    assert of_type(h.take_events(), MessageRejected)[0].tracing_id == rejected


def test_clear_not_enabled_still_closes(h: Harness) -> None:
    h.session.end(h.now)
    h.drain()
    h.recv(error_text(403, "Presence events Conversation Clear are not supported"))
    assert h.last("closeSession")
    h.recv(envelope("ConnectionClosedEvent", {}))
    assert of_type(h.take_events(), ConnectionClosed) == [ConnectionClosed(reason="closed by guest", by_guest=True)]


def test_auto_start_sends_join_with_custom_attributes_then_messages() -> None:
    h = Harness(auto_start=True, custom_attributes={"crm_id": "C-77"})
    tid = h.session.send_text("first", h.now)
    h.connect()
    [join] = h.frames("onMessage")
    assert join["message"]["events"] == [{"eventType": "Presence", "presence": {"type": "Join"}}]
    assert join["channel"] == {"metadata": {"customAttributes": {"crm_id": "C-77"}}}
    assert h.texts() == []  # waits for the Join's echo so errors stay attributable
    body = {
        "id": "j",
        "type": "Event",
        "direction": "Inbound",
        "events": [{"eventType": "Presence", "presence": {"type": "Join"}}],
    }
    h.recv(envelope("StructuredMessage", body, tracing_id=join["tracingId"]))
    [message] = [f for f in h.frames("onMessage") if f["message"]["type"] == "Text"]
    assert message["tracingId"] == tid and "channel" not in message  # attributes go once


def test_join_without_echo_does_not_block_for_long() -> None:
    h = Harness(auto_start=True)
    h.session.send_text("first", h.now)
    h.connect()
    assert h.texts() == []
    h.run_until(3.0)
    assert h.texts() == ["first"]


def test_custom_attributes_ride_on_first_message_without_autostart() -> None:
    h = Harness(custom_attributes={"k": "v"})
    h.connect()
    h.send("one")
    assert h.last("onMessage")["channel"] == {"metadata": {"customAttributes": {"k": "v"}}}
    h.recv(own_echo(h.last("onMessage")["tracingId"], "one", "e1", h.now))
    h.send("two")
    assert "channel" not in h.last("onMessage")


def test_custom_attributes_over_2048_bytes_refused() -> None:
    with pytest.raises(ValidationError, match="2048"):
        WebMessagingConfig(deployment_id=DEPLOYMENT, token=SecretStr(TOKEN), custom_attributes={"k": "x" * 2050})


def test_messages_go_strictly_in_order_one_in_flight(h: Harness) -> None:
    ids = [h.send(text) for text in ("a", "b", "c")]
    assert h.texts() == ["a"]
    for n, (tid, text) in enumerate(zip(ids, "abc", strict=True)):
        h.recv(own_echo(tid, text, f"e{n}", h.now))
    assert h.texts() == ["a", "b", "c"]
    assert [f["tracingId"] for f in h.frames("onMessage")] == ids
    assert [e.tracing_id for e in of_type(h.take_events(), GuestMessageConfirmed)] == ids


def test_duplicate_echo_is_ignored(h: Harness) -> None:
    tid = h.send("a")
    h.recv(own_echo(tid, "a", "e1", h.now))
    h.recv(own_echo(tid, "a", "e1", h.now))
    assert len(of_type(h.take_events(), GuestMessageConfirmed)) == 1


# --- inbound: dedup and reorder -----------------------------------------------------------------


def test_duplicate_and_out_of_order_inbound(h: Harness) -> None:
    t = h.now
    h.recv(agent_message("a2", "second", t - 1, message_id="m2"))
    h.recv(agent_message("a1", "first", t - 2, message_id="m1"))
    h.advance(0.3)
    h.recv(agent_message("a2", "second", t - 1, message_id="m2"))  # duplicate delivery
    h.recv(agent_message("bot3", "third (bot: no channel.messageId)", t - 0.5, bot=True))
    h.recv(agent_message("bot3", "third (bot: no channel.messageId)", t - 0.5, bot=True))
    h.run_until(2)
    messages = of_type(h.take_events(), AgentMessage)
    assert [m.message_id for m in messages] == ["m1", "m2", "bot3"]
    assert messages[2].originating_entity == "Bot"


def test_zero_reorder_window_releases_at_once() -> None:
    h = Harness(reorder_window=0)
    h.connect()
    h.recv(agent_message("a1", "now", h.now, message_id="m1"))
    assert [e.message_id for e in of_type(h.take_events(), AgentMessage)] == ["m1"]


def test_own_inbound_and_echo_replies_never_become_chat(h: Harness) -> None:
    h.recv(own_echo("someone-else", "typed elsewhere", "x1", h.now))
    health = {
        "text": "ping",
        "type": "Text",
        "direction": "Inbound",
        "id": "ebb7",
        "metadata": {"customMessageId": HEALTH_CHECK_ID},
    }
    h.recv(envelope("StructuredMessage", health, type_="response"))
    h.run_until(2)
    assert h.take_events() == []


@settings(max_examples=60, deadline=None, database=None)
@given(
    st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=25, unique=True).flatmap(
        lambda keys: st.tuples(
            st.just(keys),
            st.permutations(keys + keys[: len(keys) // 2]),  # shuffled, some delivered twice
            st.lists(st.floats(min_value=0, max_value=0.9), min_size=len(keys) * 2, max_size=len(keys) * 2),
        )
    )
)
def test_property_inbound_exactly_once_in_time_order(case: tuple[list[int], list[int], list[float]]) -> None:
    """Any shuffle and duplication of agent messages, all arriving within the reorder window of each
    other: each is relayed exactly once, in channel.time order."""
    keys, arrivals, gaps = case
    h = Harness(reorder_window=1.0)
    h.connect()
    h.take_events()
    base = h.now - 100
    start = h.now
    for key, gap in zip(arrivals, gaps, strict=False):
        h.now = start + gap  # every arrival inside one window: lateness < window
        h.recv(agent_message(f"id{key}", f"text {key}", base + key, message_id=f"m{key}"))
    h.run_until(5)
    released = [e.message_id for e in of_type(h.take_events(), AgentMessage)]
    assert released == [f"m{k}" for k in sorted(keys)]


# --- reconnect, resume, backfill ----------------------------------------------------------------


def reconnect(h: Harness, *, new_session: bool = False) -> None:
    """Drop the socket, wait the backoff out, come back and resume."""
    h.session.connection_lost(h.now)
    h.drain()
    [event] = of_type(h.take_events(), Reconnecting)
    h.advance(event.delay - 0.01)
    assert OpenSocket() not in h.intents
    h.advance(0.02)
    assert h.take_intents()[-1] == OpenSocket()
    h.session.connection_made(h.now)
    h.drain()
    assert h.last("configureSession")["token"] == TOKEN  # the same token resumes the session
    h.recv(session_response(new_session=new_session))


def test_reconnect_resume_backfill_no_loss_no_duplicate(h: Harness) -> None:
    t = h.now
    h.recv(agent_message("a1", "relayed live", t, message_id="mid-a1"))
    h.run_until(1.5)
    assert [e.message_id for e in of_type(h.take_events(), AgentMessage)] == ["mid-a1"]
    earlier = h.send("earlier, confirmed")
    t_own0 = h.now
    h.recv(own_echo(earlier, "earlier, confirmed", "own0", t_own0))
    pending = h.send("sent just before the drop")
    h.take_events()

    reconnect(h)
    assert h.take_events()[-1] == SessionStarted(new_session=False, resumed=True)
    jwt = h.last("getJwt")
    h.recv(
        envelope(
            "JwtResponse", {"jwt": "eyJ.header.sig", "exp": h.now + 3600}, type_="response", tracing_id=jwt["tracingId"]
        )
    )
    [fetch] = h.take_intents()
    assert isinstance(fetch, FetchMessageHistory) and fetch.page_number == 1
    op = fetch.operation  # the genesys.operations call, bearing the fresh JWT
    assert (op.method, op.path) == ("GET", "/api/v2/webmessaging/messages")
    assert op.params == {"pageSize": 25, "pageNumber": 1} and op.auth == GuestJwt("eyJ.header.sig")

    live_during_backfill = agent_message("a4", "live after resume", h.now + 5, message_id="mid-a4")
    h.recv(live_during_backfill)  # arrives before the backfill answer: must wait for it
    entities = [  # newest first, as Genesys pages them
        history_entity("a3", "missed two", t_own0 + 0.3),
        history_entity("own1", "sent just before the drop", t_own0 + 0.2, direction="Inbound"),
        history_entity("a2", "missed one", t_own0 + 0.1),
        history_entity("own0", "earlier, confirmed", t_own0, direction="Inbound"),
        history_entity("a1", "relayed live", t),
    ]
    h.session.rest_succeeded(fetch.request_id, h.now, history_page(entities))
    h.drain()
    h.run_until(2)
    events = h.take_events()
    assert of_type(events, GuestMessageConfirmed) == [GuestMessageConfirmed(tracing_id=pending, message_id="mid-own1")]
    assert [(e.message_id, e.text) for e in of_type(events, AgentMessage)] == [
        ("mid-a2", "missed one"),
        ("mid-a3", "missed two"),
        ("mid-a4", "live after resume"),
    ]
    assert h.texts().count("sent just before the drop") == 1  # confirmed by history, not re-sent
    h.recv(agent_message("a3", "missed two", t_own0 + 0.3, message_id="mid-a3"))  # late live copy
    h.run_until(2)
    assert of_type(h.take_events(), AgentMessage) == []


def test_reconnect_resends_message_missing_from_history(h: Harness) -> None:
    pending = h.send("lost with the socket")
    reconnect(h)
    h.recv(envelope("JwtResponse", {"jwt": "j", "exp": h.now + 3600}, type_="response"))
    [fetch] = [i for i in h.take_intents() if isinstance(i, FetchMessageHistory)]
    h.session.rest_succeeded(fetch.request_id, h.now, history_page([history_entity("a9", "old", h.now - 50)]))
    h.drain()
    resent = h.last("onMessage")
    assert resent["tracingId"] == pending and h.texts() == ["lost with the socket"] * 2
    h.recv(own_echo(pending, "lost with the socket", "e1", h.now))
    assert of_type(h.take_events(), GuestMessageConfirmed) == [
        GuestMessageConfirmed(tracing_id=pending, message_id="mid-e1")
    ]


def history_fetch(h: Harness) -> FetchMessageHistory:
    """The history read the machine asked for since the last look (the only one)."""
    [fetch] = [i for i in h.take_intents() if isinstance(i, FetchMessageHistory)]
    return fetch


def fail_and_wait_for_retry(h: Harness, fetch: FetchMessageHistory,
                            error: GenesysError | GenesysTimeout) -> FetchMessageHistory:
    """Fail a history read; the machine asks again after its backoff, and not before."""
    h.session.rest_failed(fetch.request_id, h.now, error)
    h.drain()
    retry_at = h.session.next_deadline()
    assert retry_at is not None and retry_at > h.now
    h.now = retry_at - 0.001
    h.session.timer(h.now)
    h.drain()
    assert not [i for i in h.intents if isinstance(i, FetchMessageHistory)], "asked again before the backoff"
    h.advance(0.002)
    return history_fetch(h)


def test_reconnect_without_history_falls_back_to_resend(h: Harness) -> None:
    h.send("maybe lost")
    reconnect(h)
    h.recv(envelope("JwtResponse", {"jwt": "j", "exp": h.now + 3600}, type_="response"))
    fetch = history_fetch(h)
    for _ in range(HISTORY_RETRIES):  # a read that may pass is asked again, the message held meanwhile
        fetch = fail_and_wait_for_retry(h, fetch, GenesysTimeout("read timeout"))
        assert h.texts() == ["maybe lost"] and not of_type(h.take_events(), ProtocolError)
    h.session.rest_failed(fetch.request_id, h.now, GenesysTimeout("read timeout"))
    h.drain()
    assert h.texts() == ["maybe lost"] * 2
    assert of_type(h.take_events(), ProtocolError)


def test_a_history_read_that_fails_once_is_asked_again_and_relays_the_gap(h: Harness) -> None:
    """Chaos finding: an adopted session's first history read got a 503 and the agent's messages sent
    while no worker held its socket were never relayed."""
    t = h.now
    pending = h.send("sent before the drop")
    reconnect(h)
    h.recv(envelope("JwtResponse", {"jwt": "j", "exp": h.now + 3600}, type_="response"))
    fetch = fail_and_wait_for_retry(h, history_fetch(h), GenesysError(status=503, code="service.unavailable"))
    assert fetch.page_number == 1
    entities = [history_entity("a1", "sent in the gap", t + 0.2),
                history_entity("own", "sent before the drop", t + 0.1, direction="Inbound")]
    h.session.rest_succeeded(fetch.request_id, h.now, history_page(entities))
    h.drain()
    h.run_until(2)
    events = h.take_events()
    assert [(e.message_id, e.text) for e in of_type(events, AgentMessage)] == [("mid-a1", "sent in the gap")]
    assert of_type(events, GuestMessageConfirmed) == [GuestMessageConfirmed(tracing_id=pending, message_id="mid-own")]
    assert not of_type(events, ProtocolError) and h.texts() == ["sent before the drop"]


def test_a_getjwt_refused_with_a_5xx_is_asked_again_and_a_4xxx_code_is_final(h: Harness) -> None:
    reconnect(h)
    h.recv(error_text(503, "Service unavailable", tracing_id=h.last("getJwt")["tracingId"]))
    assert not of_type(h.take_events(), ProtocolError)
    retry_at = h.session.next_deadline()
    assert retry_at is not None
    h.advance(retry_at - h.now)
    assert len(h.frames("getJwt")) == 2  # asked again after the backoff
    h.recv(error_text(4001, "Session not found", tracing_id=h.last("getJwt")["tracingId"]))
    assert [e.code for e in of_type(h.take_events(), ProtocolError)] == [4001]
    h.run_until(60)
    assert len(h.frames("getJwt")) == 2 and not h.session.backfilling


def test_a_history_429_is_asked_again_no_sooner_than_its_retry_after(h: Harness) -> None:
    reconnect(h)
    h.recv(envelope("JwtResponse", {"jwt": "j", "exp": h.now + 3600}, type_="response"))
    error = GenesysError(status=429, code="too.many.requests", rate_limit=RateLimitInfo(retry_after_s=7.0))
    h.session.rest_failed(history_fetch(h).request_id, h.now, error)
    h.drain()
    assert h.session.next_deadline() == pytest.approx(h.now + 7.0)


def test_a_history_read_refused_for_good_is_not_asked_again(h: Harness) -> None:
    h.send("x")
    reconnect(h)
    h.recv(envelope("JwtResponse", {"jwt": "j", "exp": h.now + 3600}, type_="response"))
    h.session.rest_failed(history_fetch(h).request_id, h.now, GenesysError(status=404, code="not.found"))
    h.drain()
    assert [e.code for e in of_type(h.take_events(), ProtocolError)] == [404]
    h.run_until(60)
    assert not [i for i in h.take_intents() if isinstance(i, FetchMessageHistory)]
    assert h.texts() == ["x", "x"]  # the backfill is over: the in-flight message went again


def test_backfill_pages_until_it_reaches_what_was_relayed(h: Harness) -> None:
    h.recv(agent_message("a0", "known", h.now, message_id="mid-a0"))
    h.run_until(2)
    h.take_events()
    reconnect(h)
    h.recv(envelope("JwtResponse", {"jwt": "j", "exp": h.now + 3600}, type_="response"))
    [first] = [i for i in h.take_intents() if isinstance(i, FetchMessageHistory)]
    newer = [history_entity(f"n{i}", f"new {i}", h.now + 200 - i) for i in range(3)]
    h.session.rest_succeeded(first.request_id, h.now, history_page(newer, page=1, page_count=2))
    h.drain()
    [second] = h.take_intents()
    assert isinstance(second, FetchMessageHistory) and second.page_number == 2
    older = [history_entity(f"o{i}", f"older {i}", h.now + 100 - i) for i in range(2)]
    older.append(history_entity("a0", "known", h.now - 100))
    h.session.rest_succeeded(second.request_id, h.now, history_page(older, page=2, page_count=2))
    h.drain()
    h.run_until(2)
    assert [e.message_id for e in of_type(h.take_events(), AgentMessage)] == [
        "mid-o1",
        "mid-o0",
        "mid-n2",
        "mid-n1",
        "mid-n0",
    ]


def test_new_session_after_reconnect_resends_in_flight(h: Harness) -> None:
    h.send("in flight")
    reconnect(h, new_session=True)
    assert h.frames("getJwt") == []  # nothing to backfill from a brand-new session
    assert h.texts() == ["in flight"] * 2


def test_restart_from_checkpoint_skips_what_was_relayed() -> None:
    first = Harness()
    first.connect()
    first.recv(agent_message("a1", "before restart", first.now, message_id="mid-a1"))
    first.run_until(2)
    checkpoint = RelayCheckpoint.model_validate_json(first.session.checkpoint().model_dump_json())

    h = Harness(checkpoint=checkpoint)
    h.now = first.now + 30
    h.connect(new_session=False)
    assert h.take_events() == [SessionStarted(new_session=False, resumed=False)]
    h.recv(envelope("JwtResponse", {"jwt": "j", "exp": h.now + 3600}, type_="response"))
    [fetch] = h.take_intents()
    page = [history_entity("a2", "while down", h.now - 10), history_entity("a1", "before restart", first.now - 1)]
    h.session.rest_succeeded(fetch.request_id, h.now, history_page(page))
    h.drain()
    h.run_until(2)
    assert [e.message_id for e in of_type(h.take_events(), AgentMessage)] == ["mid-a2"]


def test_missed_outbound_selects_unrelayed_agent_messages_in_time_order() -> None:
    page1 = [
        history_entity("c", "third", T0 + 3),
        history_entity(
            "typing", "", T0 + 2.5, type="Event", events=[{"eventType": "Presence", "presence": {"type": "Join"}}]
        ),
        history_entity("mine", "guest text", T0 + 2, direction="Inbound"),
        history_entity("b", "second", T0 + 2),
    ]
    page2 = [
        history_entity("b", "second", T0 + 2),
        history_entity("a", "first", T0 + 1),
        history_entity("old", "old", T0 - 500),
    ]
    entities = [StructuredMessage.model_validate(e) for e in page1 + page2]
    seen = RecentIds(capacity=16, initial=["mid-a"])
    picked = missed_outbound(entities, seen, not_before=datetime.fromtimestamp(T0 - 60, UTC))
    assert [m.dedup_key for m in picked] == ["mid-b", "mid-c"]
    assert "mid-b" not in seen  # pure: the caller decides when they count as relayed


# --- history is read as the platform's WebMessagingMessageEntityList --------------------------------
# StructuredMessage.from_history turns each entity into the frame the socket carried; the machine and
# the worker's adoption check (WebMessagingAdapter.find_own) must see what they saw when history was
# read straight into StructuredMessage.

GUEST_TEXT = "my order is late"
BOT_TIME = "2026-01-01T01:00:02.123456+01:00"  # an offset and microseconds: the instant must survive


def served_history(t: float) -> tuple[str, dict[str, str]]:
    """A page as the emulator serves it (its own entity builders), newest first, plus a bot message
    without channel.messageId and an agent typing event. Returns the JSON and the entities' dedup keys
    by role."""
    agent = Participant(purpose="agent", communications=[], name="Agent Smith")
    guest = Participant(purpose="customer", communications=[])
    conv = Conversation(kind=Kind.MESSAGING, start_time=datetime.fromtimestamp(t, UTC), participants=[agent, guest])
    said = StoredMessage(participant_id=guest.id, communication_id="c-guest", direction="inbound", text=GUEST_TEXT,
                         timestamp=datetime.fromtimestamp(t + 1, UTC))
    answer = StoredMessage(participant_id=agent.id, communication_id="c-agent", direction="outbound",
                           text="Smith here, looking", timestamp=datetime.fromtimestamp(t + 1.5, UTC))
    ended = SessionEvent(presence="Disconnect", direction="Outbound", at=datetime.fromtimestamp(t + 3, UTC),
                         read_only=True)
    bot = {"id": "bot-1", "type": "Text", "text": "A bot says hi", "direction": "Outbound",
           "originatingEntity": "Bot", "channel": {"time": BOT_TIME, "from": {"nickname": "Bot"}}}
    on_contract = [emulated.history_entity(ended).to_wire(), bot, emulated.history_entity((conv, answer)).to_wire(),
                   emulated.history_entity((conv, said)).to_wire()]
    page: dict[str, Any] = {"entities": on_contract, "pageSize": 25, "pageNumber": 1, "total": 5, "pageCount": 1}
    validate_response("GET", "/api/v2/webmessaging/messages", 200, page)
    # The socket's typing frame: the platform contract has no Typing event type, but a page holding
    # one must still be read (and the typing never relayed from history).
    typing = emulated.agent_typing("typing-1", datetime.fromtimestamp(t + 4, UTC))
    page["entities"] = [typing, *on_contract]
    keys = {"ended": ended.id, "bot": "bot-1", "answer": answer.id, "said": said.id, "typing": "typing-1"}
    return json.dumps(page), keys


def machine_view(msg: StructuredMessage) -> tuple[Any, ...]:
    """Every field of a frame the machine and guest.ownmessage read."""
    events = [(e.event_type, e.presence.type if e.presence else None) for e in msg.events]
    return (msg.type, msg.dedup_key, msg.id, msg.text, msg.direction, parse_time(msg.time), msg.read_only,
            msg.originating_entity, bool(msg.content), events, msg.metadata)


def test_history_entities_become_the_frames_the_guest_side_history_model_read() -> None:
    body, keys = served_history(T0)
    page = WebMessagingMessageEntityList.model_validate_json(body)
    frames = [StructuredMessage.from_history(e) for e in page.entities]
    as_before = [StructuredMessage.model_validate(e) for e in json.loads(body)["entities"]]  # the old HistoryPage
    assert [machine_view(m) for m in frames] == [machine_view(m) for m in as_before]
    typing, ended, bot, answer, said = frames
    assert [m.dedup_key for m in frames] == [keys[k] for k in ("typing", "ended", "bot", "answer", "said")]
    assert (bot.dedup_key, bot.originating_entity) == ("bot-1", "Bot")  # no channel.messageId: the id
    assert parse_time(bot.time) == datetime(2026, 1, 1, 0, 0, 2, 123456, tzinfo=UTC)
    assert parse_time(said.time) == datetime.fromtimestamp(T0 + 1, UTC) and said.direction == "Inbound"
    assert ended.read_only and not answer.read_only and answer.originating_entity == "Human"
    assert typing.type == "Event" and [e.event_type for e in typing.events] == ["Typing"]
    picked = missed_outbound(frames, RecentIds(capacity=16))
    assert [m.dedup_key for m in picked] == [m.dedup_key for m in missed_outbound(as_before, RecentIds(capacity=16))]
    assert [m.dedup_key for m in picked] == [keys["answer"], keys["bot"], keys["ended"]]  # oldest first, no typing


def test_history_entity_values_outside_the_frame_model_do_not_fail_the_page() -> None:
    entity = WebMessagingMessage.model_validate(
        {"direction": "Sideways", "content": [{"quickReply": {"text": "Yes", "payload": "y"}}], "metadata": {}}
    )
    msg = StructuredMessage.from_history(entity)
    assert (msg.type, msg.direction, msg.channel, msg.time, msg.dedup_key) == ("", None, None, None, None)
    assert [c.content_type for c in msg.content] == [""] and msg.events == [] and msg.metadata == {}
    assert missed_outbound([msg], RecentIds(capacity=4)) == []  # neither relayed nor taken for ours


def test_backfill_from_a_served_history_page(h: Harness) -> None:
    pending = h.send(GUEST_TEXT)
    reconnect(h)
    h.recv(envelope("JwtResponse", {"jwt": "j", "exp": h.now + 3600}, type_="response"))
    [fetch] = [i for i in h.take_intents() if isinstance(i, FetchMessageHistory)]
    served_at = h.now - 60
    body, keys = served_history(served_at)
    h.session.rest_succeeded(fetch.request_id, h.now, body)
    h.drain()
    h.run_until(2)
    events = h.take_events()
    confirmed = GuestMessageConfirmed(tracing_id=pending, message_id=keys["said"])
    assert of_type(events, GuestMessageConfirmed) == [confirmed]
    assert h.texts() == [GUEST_TEXT]  # found in history, not sent again
    assert [(e.message_id, e.time, e.originating_entity) for e in of_type(events, AgentMessage)] == [
        (keys["answer"], parse_time(iso(served_at + 1.5)), "Human"),  # the emulator writes milliseconds
        (keys["bot"], datetime(2026, 1, 1, 0, 0, 2, 123456, tzinfo=UTC), "Bot"),
    ]
    assert of_type(events, ConversationDisconnected) == [ConversationDisconnected(read_only=True)]
    assert of_type(events, AgentTyping) == []


def test_the_adapter_finds_our_message_in_a_served_history_page() -> None:
    start = GuestStart.model_validate(
        {"type": "guest.start", "deployment_id": DEPLOYMENT, "idempotency_key": "k-1", "session_key": "sk"}
    )
    adapter = WebMessagingAdapter(start, None, None, GuestSettings(), "https://api.example.test")
    body, keys = served_history(T0)
    assert adapter.find_own(body, OwnMessage(GUEST_TEXT)) == keys["said"]
    assert adapter.find_own(body, OwnMessage(GUEST_TEXT, confirmed={keys["said"]})) is None
    assert adapter.find_own(body, OwnMessage("A bot says hi")) is None  # Outbound: never ours
    assert adapter.find_own('{"entities": [{"channel": {"time": "noon"}}]}', OwnMessage(GUEST_TEXT)) is None


def test_backoff_grows_with_jitter_and_gives_up(h: Harness) -> None:
    delays: list[float] = []
    h.session.connection_lost(h.now)
    h.drain()
    while h.session.state is WmState.RECONNECTING:
        [event] = of_type(h.take_events(), Reconnecting)
        delays.append(event.delay)
        h.advance(event.delay)
        assert isinstance(h.take_intents()[-1], OpenSocket)
        h.session.connection_lost(h.now)  # the connect attempt fails
        h.drain()
    backoff = Backoff()
    for attempt, delay in enumerate(delays[:5], start=1):
        base = min(backoff.maximum, backoff.initial * 2 ** (attempt - 1))
        assert base * (1 - backoff.jitter) <= delay <= base
    assert max(delays) <= backoff.maximum
    assert h.take_events()[-1] == ConnectionClosed(reason="reconnect timed out")
    assert h.session.state is WmState.CLOSED


def test_upgrade_refused_403_is_final() -> None:
    h = Harness()
    h.session.start(h.now)
    h.session.connection_lost(h.now, http_status=403)
    h.drain()
    assert h.take_events() == [ConnectionClosed(reason="websocket refused (403)")]


def test_unconfirmed_message_forces_a_reconnect(h: Harness) -> None:
    h.send("no echo ever")
    h.run_until(25)
    assert CloseSocket(reason="message not confirmed") in h.take_intents()
    assert of_type(h.take_events(), Reconnecting)


# --- rate limits and refusals -------------------------------------------------------------------


def test_rate_limited_message_is_held_then_resent_once(h: Harness) -> None:
    a, b = h.send("a"), h.send("b")
    h.recv(too_many_requests(retry_after=3))
    assert h.take_events() == [RateLimited(retry_after=3)]
    h.advance(2.9)
    assert h.texts() == ["a"]
    h.session.send_typing(h.now)
    h.advance(0.2)
    assert h.texts() == ["a", "a"] and h.frames("onMessage")[-1]["tracingId"] == a
    h.recv(own_echo(a, "a", "e1", h.now))
    h.recv(own_echo(b, "b", "e2", h.now))
    assert h.texts() == ["a", "a", "b"]
    events = h.take_events()
    assert [e.tracing_id for e in of_type(events, GuestMessageConfirmed)] == [a, b]
    assert of_type(events, MessageRejected) == []


def test_late_echo_after_429_cancels_the_resend(h: Harness) -> None:
    a = h.send("a")
    h.recv(too_many_requests(retry_after=2))  # actually about something else; the message got through
    h.recv(own_echo(a, "a", "e1", h.now))
    h.run_until(5)
    assert h.texts() == ["a"]
    assert len(of_type(h.take_events(), GuestMessageConfirmed)) == 1


def test_transport_sdk_429_fixture_without_name_and_message(h: Harness) -> None:
    h.send("a")
    h.recv(
        '{"type":"response","class":"TooManyRequestsErrorMessage","code":429,'
        '"body":{"retryAfter":3,"errorCode":4029,"errorMessage":"Message rate too high for this session"}}'
    )
    assert h.take_events() == [RateLimited(retry_after=3)]


def test_message_too_long_4011_rejected_and_queue_moves_on(h: Harness) -> None:
    a, b = h.send("a" * 4000), h.send("b")
    h.recv(error_text(4011, "Message length 5000 is larger than 4096"))
    events = h.take_events()
    assert events == [MessageRejected(tracing_id=a, code=4011, reason="Message length 5000 is larger than 4096")]
    assert h.last("onMessage")["tracingId"] == b


def test_oversized_message_rejected_locally(h: Harness) -> None:
    tid = h.send("é" * 2049)  # 4098 bytes
    [event] = h.take_events()
    assert isinstance(event, MessageRejected) and event.tracing_id == tid and event.code == 4011
    assert h.texts() == []


def test_read_only_409_rejects_message_and_queue(h: Harness) -> None:
    a, b = h.send("a"), h.send("b")
    h.recv(error_text(409, "Session is read-only, no new messages allowed"))
    assert h.session.state is WmState.READ_ONLY
    rejected = of_type(h.take_events(), MessageRejected)
    assert [(e.tracing_id, e.code) for e in rejected] == [(a, 409), (b, 409)]
    c = h.send("c")
    assert of_type(h.take_events(), MessageRejected) == [
        MessageRejected(tracing_id=c, code=409, reason="session is read-only")
    ]
    assert h.texts() == ["a"]


def test_presence_disconnect_read_only(h: Harness) -> None:
    h.send("a")
    h.send("b")
    disconnect = [{"eventType": "Presence", "presence": {"type": "Disconnect"}}]
    h.recv(event_message("d1", h.now, disconnect, metadata={"readOnly": "true", "type": "ReadOnly"}))
    h.run_until(1.5)
    events = h.take_events()
    assert ConversationDisconnected(read_only=True) in events
    assert h.session.state is WmState.READ_ONLY
    assert [e.code for e in of_type(events, MessageRejected)] == [409]  # "b"; "a" awaits its answer


def test_presence_disconnect_without_read_only(h: Harness) -> None:
    h.recv(event_message("d1", h.now, [{"eventType": "Presence", "presence": {"type": "Disconnect"}}]))
    h.run_until(1.5)
    assert h.take_events() == [ConversationDisconnected(read_only=False)]
    assert h.session.state is WmState.CONFIGURED


def test_connection_closed_event_is_final(h: Harness) -> None:
    h.send("a")
    h.send("b")
    h.recv(envelope("ConnectionClosedEvent", {"reasonCode": "signedIn"}))
    events = h.take_events()
    assert events[0] == ConnectionClosed(reason="signedIn")
    assert [e.maybe_delivered for e in of_type(events, MessageRejected)] == [True, False]
    assert CloseSocket(reason="signedIn") in h.take_intents()
    h.session.connection_lost(h.now)
    h.advance(60)
    assert h.take_events() == [] and h.take_intents() == []


def test_session_expired_event(h: Harness) -> None:
    h.recv(envelope("SessionExpiredEvent", {}))
    assert h.take_events() == [SessionExpired()]
    assert h.session.state is WmState.EXPIRED


def test_4006_expired_on_send(h: Harness) -> None:
    tid = h.send("a")
    h.recv(error_text(4006, "session expired error message"))
    events = h.take_events()
    assert events[0] == SessionExpired(code=4006)
    assert events[1] == MessageRejected(tracing_id=tid, code=4006, reason="session expired", maybe_delivered=True)


def test_4007_session_not_found_on_configure() -> None:
    h = Harness()
    h.session.start(h.now)
    h.session.connection_made(h.now)
    h.drain()
    h.recv(error_text(4007, "session not found error message"))
    assert h.take_events() == [SessionExpired(code=4007)]


def test_configure_refused_is_final_but_5000_retries() -> None:
    h = Harness()
    h.session.start(h.now)
    h.session.connection_made(h.now)
    h.drain()
    h.recv(error_text(5000, "Request failed."))
    assert of_type(h.take_events(), Reconnecting)
    h = Harness()
    h.session.start(h.now)
    h.session.connection_made(h.now)
    h.drain()
    h.recv(error_text(403, "Turn on the Feature Toggle or fix the configuration."))
    [closed] = h.take_events()
    assert isinstance(closed, ConnectionClosed) and "403" in closed.reason


# --- typing and echo ----------------------------------------------------------------------------


def test_typing_throttled_to_one_per_five_seconds(h: Harness) -> None:
    results = []
    for dt in (0, 1, 3.9, 0.1, 2):  # at +0, +1, +4.9, +5.0, +7
        h.advance(dt)
        results.append(h.session.send_typing(h.now))
        h.drain()
    assert results == [True, False, False, True, False]
    typing = [f for f in h.frames("onMessage") if f["message"]["type"] == "Event"]
    assert typing[0]["message"]["events"] == [{"eventType": "Typing", "typing": {"type": "On"}}]
    assert len(typing) == 2


def test_echo_at_most_twice_a_minute(h: Harness) -> None:
    for _ in range(6):  # a flapping link: every resume wants a health check
        reconnect(h, new_session=True)
        if h.frames("echo"):
            tid = h.last("echo")["tracingId"]
            h.recv(
                envelope(
                    "StructuredMessage",
                    {"text": "ping", "type": "Text", "direction": "Inbound", "id": "x"},
                    type_="response",
                    tracing_id=tid,
                )
            )
        h.advance(4)
    h.run_until(120)
    times = [at for at, f in zip(h.sent_at, h.sent, strict=True) if f["action"] == "echo"]
    assert len(times) >= 2
    assert all(b - a >= 30 for a, b in itertools.pairwise(times))
    assert of_type(h.take_events(), AgentMessage) == []


def test_echo_near_expiry_once_and_reply_is_not_chat() -> None:
    h = Harness()
    h.connect(expires=T0 + 1000)
    h.run_until(600)
    assert h.frames("echo") == []
    h.run_until(95)  # now past expiry - 310 s, within the echo timeout
    [echo] = h.frames("echo")
    assert echo["message"] == {"type": "Text", "text": "ping", "metadata": {"customMessageId": HEALTH_CHECK_ID}}
    reply = {
        "text": "ping",
        "type": "Text",
        "direction": "Inbound",
        "id": "ebb7e3aa5829c0fed0f43ccbcca4ade7",
        "metadata": {"durationSeconds": "259200", "expirationDate": str(int(h.now + 259200))},
    }
    h.recv(envelope("StructuredMessage", reply, type_="response", tracing_id=echo["tracingId"]))
    assert h.session.expires_at == int(h.now + 259200)
    h.run_until(600)
    assert len(h.frames("echo")) == 1
    assert [e for e in h.take_events() if not isinstance(e, SessionStarted)] == []


def test_unanswered_echo_forces_reconnect(h: Harness) -> None:
    reconnect(h, new_session=True)
    assert h.frames("echo")
    h.run_until(11)
    assert CloseSocket(reason="echo not answered") in h.take_intents()


# --- robustness and contract --------------------------------------------------------------------


def test_unknown_frame_class_and_garbage_do_not_crash(h: Harness) -> None:
    h.recv(json.dumps({"type": "message", "class": "HoloDeckEvent", "code": 200, "body": {"x": 1}}))
    h.recv(envelope("PresignedUrlResponse", {"attachmentId": "a", "headers": {}, "url": "https://x"}, type_="response"))
    h.recv("not json {")
    h.recv(json.dumps({"type": "message", "class": "StructuredMessage", "code": 200, "body": {"no": "type"}}))
    events = h.take_events()
    assert events[:2] == [UnknownFrame(kind="HoloDeckEvent"), UnknownFrame(kind="PresignedUrlResponse")]
    assert [type(e) for e in events[2:]] == [ProtocolError, ProtocolError]
    h.send("still works")
    assert h.texts() == ["still works"]


TRANSPORT_SDK_FIXTURES = [  # verbatim from the transport SDK's Response.kt
    '{"type":"response","class":"SessionResponse","code":200,"body":{"connected":true,"newSession":false}}',
    '{"type":"message","class":"StructuredMessage","code":200,"body":{"direction":"Outbound","id":"msg_id",'
    '"channel":{"time":"some_time","type":"Private"},"type":"Structured","text":"Hi","content":[{"contentType":'
    '"QuickReply","quickReply":{"text":"text_a","payload":"payload_a","action":"action_a"}}],"originatingEntity":"Bot"}}',
    '{"type":"message","class":"ConnectionClosedEvent","code":200,"body":{"reason":"signedIn"}}',
    '{"type": "response","class": "SessionExpiredEvent","code": 200,"body": {}}',
    '{"type":"response","class":"JwtResponse","code":200,"body":{"jwt":"some_jwt","exp":333}}',
    '{"type":"message","class":"LogoutEvent","code":200,"body":{}}',
    '{"type":"response","class":"string","code":4013,'
    '"body":"Custom Attributes in channel metadata is larger than 2048 bytes"}',
]


@pytest.mark.parametrize("raw", TRANSPORT_SDK_FIXTURES)
def test_transport_sdk_frames_decode(raw: str) -> None:
    frame = parse_server_frame(raw)
    assert frame.kind == json.loads(raw)["class"]


def test_every_emitted_frame_validates_against_the_contract() -> None:
    """Exercise every request the machine can make; Harness.drain validates each one."""
    h = Harness(auto_start=True, custom_attributes={"a": "b"})
    h.connect()
    h.run_until(3)
    tid = h.send("hello")
    h.session.send_typing(h.now + 10)
    h.recv(own_echo(tid, "hello", "e1", h.now))
    h.session.send_typing(h.now + 10)
    reconnect(h)
    h.recv(envelope("JwtResponse", {"jwt": "j", "exp": h.now + 3600}, type_="response"))
    [fetch] = [i for i in h.take_intents() if isinstance(i, FetchMessageHistory)]
    h.session.rest_succeeded(fetch.request_id, h.now, history_page([]))
    h.drain()
    h.session.end(h.now)
    h.drain()
    h.recv(error_text(403, "Presence events Conversation Clear are not supported"))
    actions = {f["action"] for f in h.sent}
    assert actions == set(REQUEST_DEFINITION) and len(h.sent) >= 8


def test_tokens_and_text_stay_out_of_reprs(h: Harness) -> None:
    tid = h.send("my card number is 4111")
    reconnect(h)
    h.recv(envelope("JwtResponse", {"jwt": "SECRET.JWT.VALUE", "exp": h.now + 3600}, type_="response"))
    h.recv(agent_message("a1", "agent secret reply", h.now, message_id="m1"))
    h.run_until(2)
    dumped = repr(h.session.config) + repr(h.take_events()) + repr(h.take_intents())
    dumped += repr(parse_server_frame(own_echo(tid, "my card number is 4111", "e", h.now)))
    for secret in (TOKEN, "4111", "SECRET.JWT.VALUE", "agent secret reply"):
        assert secret not in dumped


def test_history_401_drops_the_jwt_for_next_time(h: Harness) -> None:
    reconnect(h)
    h.recv(envelope("JwtResponse", {"jwt": "j", "exp": h.now + 3600}, type_="response"))
    [fetch] = h.take_intents()
    h.session.rest_failed(fetch.request_id, h.now, GenesysError(status=401, code="bad.credentials"))
    h.drain()
    reconnect(h)
    assert len(h.frames("getJwt")) == 2


def test_a_history_401_is_read_again_with_a_fresh_jwt(h: Harness) -> None:
    reconnect(h)
    h.recv(envelope("JwtResponse", {"jwt": "old", "exp": h.now + 3600}, type_="response"))
    h.session.rest_failed(history_fetch(h).request_id, h.now, GenesysError(status=401, code="bad.credentials"))
    h.drain()
    retry_at = h.session.next_deadline()
    assert retry_at is not None
    h.advance(retry_at - h.now)
    assert len(h.frames("getJwt")) == 2  # minted again before the second read
    h.recv(envelope("JwtResponse", {"jwt": "fresh", "exp": h.now + 3600}, type_="response",
                    tracing_id=h.last("getJwt")["tracingId"]))
    assert history_fetch(h).operation.auth == GuestJwt("fresh")


def test_late_history_answer_is_ignored(h: Harness) -> None:
    h.session.rest_succeeded("never-asked", h.now, history_page([]))
    h.drain()
    assert h.take_events() == []


def test_reconnect_waits_out_backfill_timeout(h: Harness) -> None:
    h.send("x")
    reconnect(h)
    h.run_until(16)  # getJwt never answered
    assert of_type(h.take_events(), ProtocolError)
    assert h.texts() == ["x", "x"]


def test_times_parse_even_when_junk(h: Harness) -> None:
    body = agent_body("a", "hi", h.now, message_id="m")
    body["channel"]["time"] = "some_time"
    h.recv(envelope("StructuredMessage", body))
    h.run_until(2)
    [msg] = of_type(h.take_events(), AgentMessage)
    assert msg.time is None


def test_send_after_close_is_rejected_not_dropped(h: Harness) -> None:
    h.recv(envelope("ConnectionClosedEvent", {}))
    tid = h.send("too late")
    assert of_type(h.take_events(), MessageRejected)[-1].tracing_id == tid


def test_deadline_drives_reorder_release(h: Harness) -> None:
    h.recv(agent_message("a", "x", h.now, message_id="m"))
    deadline = h.session.next_deadline()
    assert deadline == pytest.approx(h.now + 1.0)
    h.now = deadline
    h.session.timer(h.now)
    h.drain()
    assert of_type(h.take_events(), AgentMessage)


def test_checkpoint_roundtrip_bounds_memory() -> None:
    h = Harness(dedup_capacity=16, reorder_window=0)
    h.connect()
    for i in range(40):
        h.recv(agent_message(f"a{i}", "x", h.now + i, message_id=f"m{i}"))
    checkpoint = h.session.checkpoint()
    assert len(checkpoint.seen_ids) == 16 and checkpoint.seen_ids[-1] == "m39"
    assert checkpoint.watermark == datetime.fromtimestamp(h.now + 39, UTC)
    assert checkpoint.watermark - timedelta(seconds=39) == datetime.fromtimestamp(h.now, UTC)


def test_a_history_fetch_names_its_operation_with_the_deployments_origin() -> None:
    origin = "https://shop.example"
    fetch = FetchMessageHistory(request_id="r", page_number=2, page_size=25, jwt=SecretStr("eyJ.j"), origin=origin)
    op = fetch.operation
    assert op.headers == {"Origin": origin} and op.params == {"pageSize": 25, "pageNumber": 2}
    without = FetchMessageHistory(request_id="r", page_number=1, page_size=25, jwt=SecretStr("eyJ.j"))
    assert without.operation.headers == {}
