"""The Web Messaging guest socket of the emulator, over a real server on loopback.

Each test talks to ``ws://127.0.0.1:<port>/v1?deploymentId=...`` with the ``websockets`` client; every
frame received is checked against the Web Messaging contract (tests/support/ws_client.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from emulator.fixtures import SEED
from harness.emulator_server import FAST_AGENT_ENV, EmulatorServer, running_emulator
from tests.support import contract
from tests.support.emulator_server import WEBMESSAGING_DEPLOYMENT, agentless_body, fetch_token
from tests.support.ws_client import ORIGIN, Frame, WmGuest, refused_status, wm_guest, ws_base

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

EU_DEPLOYMENT = SEED.deployments[1].id
PRESENCE_JOIN = {"eventType": "Presence", "presence": {"type": "Join"}}
PRESENCE_CLEAR = {"eventType": "Presence", "presence": {"type": "Clear"}}
TYPING = {"eventType": "Typing", "typing": {"type": "On"}}
READ_ONLY = "Session is read-only, no new messages allowed"


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with running_emulator(FAST_AGENT_ENV) as running:
        yield running


@pytest.fixture
def base(server: EmulatorServer, http: httpx.AsyncClient) -> str:
    return server.base_url


async def no_agent(http: httpx.AsyncClient) -> None:
    (await http.patch("/__emulator/config", json={"auto_agent": False})).raise_for_status()


async def sessions(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    return list((await http.get("/__emulator/webmessaging/sessions")).json()["sessions"])


async def ledger(http: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    return list((await http.get("/__emulator/ledger", params=params)).json()["entries"])


def is_presence(frame: Frame, kind: str) -> bool:
    body = frame["body"]
    return frame["class"] == "StructuredMessage" and any(
        e.get("presence", {}).get("type") == kind for e in body.get("events", [])
    )


# --- a whole conversation -----------------------------------------------------------------------------------
async def test_a_full_conversation_with_the_auto_agent(base: str, http: httpx.AsyncClient) -> None:
    async with wm_guest(base) as guest:
        configured = await guest.configure()
        assert configured["type"] == "response" and configured["class"] == "SessionResponse"
        session = configured["body"]
        assert session["connected"] is True and session["newSession"] is True and session["readOnly"] is False
        assert session["durationSeconds"] == 259200 and isinstance(session["expirationDate"], int)
        assert session["allowedMedia"]["inbound"]["maxFileSizeKB"] == 10240

        joined = await guest.answer(await guest.event(PRESENCE_JOIN))
        assert is_presence(joined, "Join") and joined["body"]["direction"] == "Inbound"
        greeting = await guest.outbound()
        assert greeting["type"] == "message" and greeting["body"]["originatingEntity"] == "Human"
        assert greeting["body"]["channel"]["from"]["nickname"] == "Emma Agent"
        assert greeting["body"]["text"] == "Hello, my name is Emma Agent. How can I help you?"

        await guest.event(TYPING)  # recorded, not echoed
        tracing_id = await guest.say("Where is my parcel?")
        echo = await guest.answer(tracing_id)
        body = echo["body"]
        assert (echo["type"], body["type"], body["direction"], body["text"]) == (
            "message",
            "Text",
            "Inbound",
            "Where is my parcel?",
        )
        assert re.fullmatch(r"[0-9a-f]{32}", body["id"]) and body["id"] == body["channel"]["messageId"].replace("-", "")
        assert body["channel"]["time"].endswith("Z")
        typing = await guest.outbound(text=False)
        assert typing["body"]["events"] == [{"eventType": "Typing", "typing": {"type": "On", "duration": 5000}}]
        assert (await guest.outbound())["body"]["text"] == "You said: Where is my parcel?"

        # The conversation is a web messaging conversation of the Platform API, with the agent in it.
        conversation_id = (await sessions(http))[0]["conversation_id"]
        async with httpx.AsyncClient(base_url=base, timeout=5.0) as api:
            api.headers["Authorization"] = f"Bearer {await fetch_token(api)}"
            conv = (await api.get(f"/api/v2/conversations/{conversation_id}")).json()
        purposes = {p["purpose"]: p for p in conv["participants"]}
        assert purposes["customer"]["messages"][0]["type"] == "webmessaging"
        assert purposes["agent"]["userId"] == SEED.agents[0].id and purposes["acd"]["queueName"] == "Support"

        await guest.say("Bye!")
        assert (await guest.outbound())["body"]["text"] == "Goodbye!"
        disconnect = await guest.outbound(text=False)
        assert is_presence(disconnect, "Disconnect") and disconnect["body"]["metadata"] == {"readOnly": "true"}
        refused = await guest.answer(await guest.say("Hello?"))
        assert (refused["class"], refused["code"], refused["body"]) == ("string", 409, READ_ONLY)

    entries = await ledger(http)
    kinds = [e["kind"] for e in entries]
    for kind in (
        "guest.session.created",
        "conversation.created",
        "guest.typing",
        "guest.message.received",
        "agent.joined",
        "agent.typing",
        "agent.message.sent",
        "conversation.disconnected",
    ):
        assert kind in kinds, kind
    assert kinds.count("guest.message.received") == 2  # the refused one is not
    assert all(e.get("session_id") for e in entries if e["conversation_id"] == conversation_id)
    assert all("text" not in e for e in entries)


async def test_the_same_token_resumes_the_session(base: str, http: httpx.AsyncClient) -> None:
    await no_agent(http)
    token = str(uuid.uuid4())
    async with wm_guest(base, token=token) as first:
        assert (await first.configure())["body"]["newSession"] is True
        await first.answer(await first.say("one"))
    async with wm_guest(base, token=token) as again:
        resumed = await again.configure()
        assert resumed["body"]["newSession"] is False and resumed["body"]["connected"] is True
        await again.answer(await again.say("two"))
    [session] = await sessions(http)
    assert len(session["conversation_ids"]) == 1  # both messages in the one conversation


async def test_a_fourth_connection_evicts_the_oldest(base: str, http: httpx.AsyncClient) -> None:
    await no_agent(http)
    token = str(uuid.uuid4())
    async with (
        wm_guest(base, token=token) as first,
        wm_guest(base, token=token) as second,
        wm_guest(base, token=token) as third,
    ):
        for guest in (first, second, third):
            await guest.configure()
        async with wm_guest(base, token=token) as fourth:
            await fourth.configure()
            evicted = await first.expect(lambda f: f["class"] == "ConnectionClosedEvent")
            assert evicted["type"] == "message" and evicted["body"] == {}
            assert await first.closed() == 1000
            tracing_id = await fourth.say("to every connection")
            for guest in (second, third, fourth):
                assert (await guest.answer(tracing_id))["body"]["text"] == "to every connection"
            assert (await sessions(http))[0]["connections"] == 3


# --- the upgrade ---------------------------------------------------------------------------------------------
async def test_deployment_and_origin_are_checked_on_the_upgrade(base: str, http: httpx.AsyncClient) -> None:
    url = f"{ws_base(base)}/v1?deploymentId={{}}&application=tests"
    assert await refused_status(url.format(WEBMESSAGING_DEPLOYMENT), {"Origin": "https://evil.example.org"}) == 403
    assert await refused_status(url.format(EU_DEPLOYMENT), {"Origin": ORIGIN}) == 403
    assert await refused_status(url.format(str(uuid.uuid4())), {"Origin": ORIGIN}) == 403
    guestchat_deployment = next(d.id for d in SEED.deployments if d.type == "guestchat")
    assert await refused_status(url.format(guestchat_deployment), {"Origin": ORIGIN}) == 403
    async with wm_guest(base, origin="https://shop.parley.example.com") as subdomain:  # a subdomain is allowed
        assert (await subdomain.configure())["code"] == 200
    async with wm_guest(base, origin=None) as no_origin:  # server-side clients send none
        assert (await no_origin.configure())["code"] == 200
    await http.patch("/__emulator/config", json={"webmessaging_require_origin": True})
    assert await refused_status(url.format(WEBMESSAGING_DEPLOYMENT)) == 403


async def test_an_injected_fault_refuses_the_upgrade(base: str, http: httpx.AsyncClient) -> None:
    fault = {"method": "GET", "path": "/v1", "status": 503, "times": 1}
    assert (await http.post("/__emulator/faults", json=fault)).status_code == 201
    url = f"{ws_base(base)}/v1?deploymentId={WEBMESSAGING_DEPLOYMENT}"
    assert await refused_status(url, {"Origin": ORIGIN}) == 503
    async with wm_guest(base) as guest:  # the fault fired once
        assert (await guest.configure())["code"] == 200


# --- limits and errors ----------------------------------------------------------------------------------------
async def test_more_than_five_messages_a_second_is_429(base: str, http: httpx.AsyncClient) -> None:
    await no_agent(http)
    async with wm_guest(base) as guest:
        await guest.configure()
        tracing_ids = [await guest.say(f"message {n}") for n in range(6)]
        answers = [await guest.answer(t) for t in tracing_ids]
    assert [a["class"] for a in answers[:5]] == ["StructuredMessage"] * 5
    limited = answers[5]
    assert (limited["type"], limited["class"], limited["code"]) == ("response", "TooManyRequestsErrorMessage", 429)
    assert limited["body"]["errorCode"] == 4029 and limited["body"]["retryAfter"] >= 1
    assert limited["body"]["errorMessage"] == "Message rate too high for this session"


async def test_request_errors(base: str, http: httpx.AsyncClient) -> None:
    await no_agent(http)
    async with wm_guest(base) as guest:
        unknown = await guest.answer(await guest.say("before configuring"))
        assert (unknown["class"], unknown["code"]) == ("string", 4007)
        await guest.configure()
        too_long = await guest.answer(await guest.say("é" * 2049))  # 4098 bytes
        assert (too_long["code"], too_long["body"]) == (4011, "Message length 4098 is larger than 4096")
        exactly = await guest.answer(await guest.say("é" * 2048))
        assert exactly["class"] == "StructuredMessage"
        attributes = {"channel": {"metadata": {"customAttributes": {"blob": "x" * 2100}}}}
        assert (await guest.answer(await guest.say("hi", **attributes)))["code"] == 4013
        assert (await guest.answer(await guest.send("onAttachment", attachmentId="a")))["code"] == 4000
        assert (await guest.answer(await guest.send("noSuchAction")))["code"] == 400
        await guest.ws.send("not json")
        assert (await guest.expect(lambda f: f["class"] == "string"))["code"] == 400


async def test_more_than_sixty_requests_a_minute_on_a_connection_is_429(base: str, http: httpx.AsyncClient) -> None:
    async with wm_guest(base) as guest:
        await guest.configure()
        answers = [
            await guest.answer(await guest.send("getConfiguration", deploymentId=guest.deployment_id))
            for _ in range(60)
        ]
    assert [a["class"] for a in answers[:59]] == ["GetConfigurationResponse"] * 59
    assert (answers[59]["class"], answers[59]["code"]) == ("TooManyRequestsErrorMessage", 429)
    assert answers[0]["body"]["sessionDurationSeconds"] == 259200


async def test_echo_reports_the_session_lifetime_and_is_limited(base: str, http: httpx.AsyncClient) -> None:
    async with wm_guest(base) as guest:
        expires = (await guest.configure())["body"]["expirationDate"]
        ping = {"type": "Text", "text": "ping", "metadata": {"customMessageId": "SGVhbHRoQ2hlY2tNZXNzYWdlSWQ="}}
        reply = await guest.answer(await guest.send("echo", message=ping))
        assert (reply["type"], reply["class"]) == ("response", "StructuredMessage")
        assert reply["body"]["text"] == "ping" and reply["body"]["direction"] == "Inbound"
        assert reply["body"]["metadata"] == {
            "customMessageId": "SGVhbHRoQ2hlY2tNZXNzYWdlSWQ=",
            "durationSeconds": "259200",
            "expirationDate": str(expires),
        }
        assert (await guest.answer(await guest.send("echo", message=ping)))["code"] == 200
        limited = await guest.answer(await guest.send("echo", message=ping))
        assert (limited["class"], limited["code"]) == ("TooManyRequestsErrorMessage", 429)
    assert not any(e["kind"] == "conversation.created" for e in await ledger(http))  # echo is not chat


# --- read-only, send mode, clear, close, expiry ---------------------------------------------------------------
async def test_read_only_switch_then_start_new(base: str, http: httpx.AsyncClient) -> None:
    await no_agent(http)
    token = str(uuid.uuid4())
    async with wm_guest(base, token=token) as guest:
        await guest.configure()
        await guest.answer(await guest.say("hello"))
        [session] = await sessions(http)
        assert (
            await http.post(f"/__emulator/webmessaging/sessions/{session['session_id']}/read-only")
        ).status_code == 200
        disconnect = await guest.outbound(text=False)
        assert is_presence(disconnect, "Disconnect") and disconnect["body"]["metadata"] == {"readOnly": "true"}
        assert (await guest.answer(await guest.say("still there?")))["code"] == 409
        closed = await guest.answer(await guest.send("closeSession", closeAllConnections=True))
        assert closed["body"]["connected"] is False and closed["body"]["readOnly"] is True
    async with wm_guest(base, token=token) as again:
        assert (await again.configure())["body"]["readOnly"] is True
        fresh = await again.configure(startNew=True)
        assert fresh["body"]["newSession"] is True and fresh["body"]["readOnly"] is False
        assert (await again.answer(await again.say("starting over")))["class"] == "StructuredMessage"
    [session] = await sessions(http)
    assert len(session["conversation_ids"]) == 2


async def test_a_send_mode_disconnect_lets_the_guest_start_again(base: str, http: httpx.AsyncClient) -> None:
    await http.patch("/__emulator/config", json={"webmessaging_disconnect_read_only": False})
    async with wm_guest(base) as guest:
        await guest.configure()
        await guest.answer(await guest.say("hello"))
        await guest.outbound()  # greeting
        conversation_id = (await sessions(http))[0]["conversation_id"]
        await http.post(f"/__emulator/conversations/{conversation_id}/agent/disconnect", json={})
        disconnect = await guest.expect(lambda f: is_presence(f, "Disconnect"))
        assert "metadata" not in disconnect["body"]
        assert (await guest.answer(await guest.say("one more thing")))["class"] == "StructuredMessage"
    [session] = await sessions(http)
    assert session["read_only"] is False and session["conversation_id"] != conversation_id


async def test_presence_clear_ends_the_session_on_every_connection(base: str, http: httpx.AsyncClient) -> None:
    await no_agent(http)
    token = str(uuid.uuid4())
    async with wm_guest(base, token=token) as guest, wm_guest(base, token=token) as other:
        await guest.configure()
        await other.configure()
        await guest.answer(await guest.say("hello"))
        await guest.event(PRESENCE_CLEAR)
        for socket in (guest, other):
            cleared = await socket.expect(lambda f: f["class"] in ("SessionClearedEvent", "ConnectionClosedEvent"))
            assert cleared["class"] == "SessionClearedEvent"
            assert (await socket.recv())["class"] == "ConnectionClosedEvent"
            assert await socket.closed() == 1000
    conversation_id = (await sessions(http))[0]["conversation_id"]
    ended = await ledger(http, kind=["conversation.disconnected", "guest.session.ended"])
    assert [(e["kind"], e["by"]) for e in ended] == [
        ("conversation.disconnected", "customer"),
        ("guest.session.ended", "guest"),
    ]
    assert ended[0]["conversation_id"] == conversation_id
    async with wm_guest(base, token=token) as again:  # the token starts a new session
        assert (await again.configure())["body"]["newSession"] is True


async def test_close_session_closes_the_other_connections(base: str, http: httpx.AsyncClient) -> None:
    token = str(uuid.uuid4())
    async with wm_guest(base, token=token) as guest, wm_guest(base, token=token) as other:
        await guest.configure()
        await other.configure()
        closed = await guest.answer(await guest.send("closeSession", closeAllConnections=True))
        assert (closed["type"], closed["class"], closed["body"]["connected"]) == ("response", "SessionResponse", False)
        assert (await other.expect(lambda f: f["class"] == "ConnectionClosedEvent"))["type"] == "message"
        assert await other.closed() == 1000


async def test_an_expired_session_is_4006(base: str, http: httpx.AsyncClient) -> None:
    token = str(uuid.uuid4())
    async with wm_guest(base, token=token) as guest:
        await guest.configure()
        [session] = await sessions(http)
        await http.post(f"/__emulator/webmessaging/sessions/{session['session_id']}/expire")
        assert (await guest.expect(lambda f: f["class"] == "SessionExpiredEvent"))["body"] == {}
        assert (await guest.answer(await guest.say("hello")))["code"] == 4006
        assert (await guest.configure())["code"] == 4006
    # A session also expires when its lifetime runs out (the emulator's clock, moved forward).
    async with wm_guest(base) as guest:
        await guest.configure()
        await http.post("/__emulator/clock", json={"advance_s": 259201})
        assert (await guest.answer(await guest.say("hello")))["code"] == 4006
        assert any(f["class"] == "SessionExpiredEvent" for f in guest.frames)


# --- history ------------------------------------------------------------------------------------------------
async def test_history_pages_the_sessions_messages_newest_first(base: str, http: httpx.AsyncClient) -> None:
    await no_agent(http)
    async with wm_guest(base) as guest:
        await guest.configure()
        ids = [(await guest.answer(await guest.say(f"guest {n}")))["body"]["id"] for n in range(3)]
        conversation_id = (await sessions(http))[0]["conversation_id"]
        await http.post(f"/__emulator/conversations/{conversation_id}/agent/join", json={})
        for n in range(2):
            await http.post(f"/__emulator/conversations/{conversation_id}/agent/messages", json={"text": f"agent {n}"})
            ids.append((await guest.outbound())["body"]["id"])
        jwt_frame = await guest.answer(await guest.send("getJwt"))
        assert jwt_frame["class"] == "JwtResponse" and isinstance(jwt_frame["body"]["exp"], int)
        jwt = jwt_frame["body"]["jwt"]

    pages = []
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {jwt}"}) as guest_api:
        for number in (1, 2, 3):
            response = await guest_api.get(
                "/api/v2/webmessaging/messages", params={"pageSize": 2, "pageNumber": number}
            )
            contract.validate_response("GET", "/api/v2/webmessaging/messages", 200, response.json())
            pages.append(response.json())
    assert [p["total"] for p in pages] == [5, 5, 5] and pages[0]["pageCount"] == 3
    entities = [e for page in pages for e in page["entities"]]
    assert [e["id"] for e in entities] == ids[::-1]
    assert [e["text"] for e in entities] == ["agent 1", "agent 0", "guest 2", "guest 1", "guest 0"]
    assert [e["direction"] for e in entities] == ["Outbound"] * 2 + ["Inbound"] * 3
    assert entities[0]["originatingEntity"] == "Human"
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {jwt}"}) as guest_api:
        last = (await guest_api.get("/api/v2/webmessaging/messages", params={"pageSize": 2, "pageNumber": 4})).json()
    assert last["entities"] == []


# --- what others do reaches the guest ----------------------------------------------------------------------------
async def test_an_agentless_send_to_the_guest_reaches_its_socket(base: str, http: httpx.AsyncClient) -> None:
    await no_agent(http)
    async with wm_guest(base) as guest:
        await guest.configure()
        await guest.answer(await guest.say("hello"))
        [session] = await sessions(http)
        async with httpx.AsyncClient(base_url=base, timeout=5.0) as api:
            api.headers["Authorization"] = f"Bearer {await fetch_token(api)}"
            body = agentless_body(
                externalContactId=session["external_contact_id"], textBody="Your parcel ships today."
            ) | {"useExistingActiveConversation": True}
            sent = (await api.post("/api/v2/conversations/messages/agentless", json=body)).json()
        assert sent["conversationId"] == session["conversation_id"]
        proactive = await guest.outbound()
        assert proactive["body"]["text"] == "Your parcel ships today."
        assert proactive["body"]["originatingEntity"] == "Bot"
        await http.post(f"/__emulator/conversations/{session['conversation_id']}/agent/join", json={})
        await http.post(f"/__emulator/conversations/{session['conversation_id']}/agent/typing")
        assert (await guest.outbound(text=False))["body"]["events"][0]["eventType"] == "Typing"


# --- admin switches ------------------------------------------------------------------------------------------
async def test_the_drop_switch_drops_abruptly_or_with_a_close_code(base: str, http: httpx.AsyncClient) -> None:
    token = str(uuid.uuid4())
    async with wm_guest(base, token=token) as guest:
        await guest.configure()
        dropped = await http.post("/__emulator/sockets/drop", json={"protocol": "webmessaging"})
        assert dropped.json() == {"sockets": 1}
        assert await guest.closed() == 1006  # no close frame: a TCP drop
    async with wm_guest(base, token=token) as guest:
        assert (await guest.configure())["body"]["newSession"] is False  # the session survived
        session_id = (await sessions(http))[0]["session_id"]
        going_away = {"session_id": session_id, "abrupt": False, "code": 1001, "reason": "going away"}
        assert (await http.post("/__emulator/sockets/drop", json=going_away)).json() == {"sockets": 1}
        assert await guest.closed() == 1001


async def test_the_shape_switch_duplicates_or_reorders_the_next_frames(base: str, http: httpx.AsyncClient) -> None:
    await no_agent(http)
    async with wm_guest(base) as guest:
        await guest.configure()
        await guest.answer(await guest.say("hello"))
        [session] = await sessions(http)
        conv = f"/__emulator/conversations/{session['conversation_id']}"
        await http.post(f"{conv}/agent/join", json={})

        shape = {"session_id": session["session_id"], "mode": "duplicate", "frames": 1}
        assert (await http.post("/__emulator/sockets/shape", json=shape)).json() == {"sockets": 1}
        await http.post(f"{conv}/agent/messages", json={"text": "twice"})
        first, second = await guest.outbound(), await guest.outbound()
        assert first == second and first["body"]["text"] == "twice"

        shape = {"session_id": session["session_id"], "mode": "reorder", "frames": 2}
        await http.post("/__emulator/sockets/shape", json=shape)
        await http.post(f"{conv}/agent/messages", json={"text": "first"})
        await http.post(f"{conv}/agent/messages", json={"text": "second"})
        texts = [(await guest.outbound())["body"]["text"] for _ in range(2)]
        assert texts == ["second", "first"]
        await http.post(f"{conv}/agent/messages", json={"text": "in order again"})
        assert (await guest.outbound())["body"]["text"] == "in order again"


# --- the Messenger configuration's conversation settings (issue 13.2) ------------------------------------------
DEFAULTS_DEPLOYMENT = "7a1d4e92-5c3b-4f08-9e6a-2b8d1f5c7e30"  # Genesys' defaults: Disconnect off, Clear off
READ_ONLY_DEPLOYMENT = "c4e8b1f7-2d6a-4a93-8b5e-9f0c3d7a1e62"
SEND_DEPLOYMENT = "5f9b2c6d-8e1a-4d73-a0f4-6c2e8b9d3a15"


async def _agent_ends(http: httpx.AsyncClient, guest: WmGuest) -> str:
    """The guest writes, the agent answers and then ends the conversation; the conversation's id."""
    await guest.configure()
    await guest.answer(await guest.say("hello"))
    await guest.outbound()  # the agent's greeting
    [session] = [s for s in await sessions(http) if s["deployment_id"] == guest.deployment_id]
    conversation_id = session["conversation_id"]
    (await http.post(f"/__emulator/conversations/{conversation_id}/agent/disconnect", json={})).raise_for_status()
    return str(conversation_id)


async def test_under_genesys_defaults_the_guest_is_not_told_the_agent_ended(base: str, http: httpx.AsyncClient) -> None:
    async with wm_guest(base, deployment_id=DEFAULTS_DEPLOYMENT) as guest:
        ended = await _agent_ends(http, guest)
        # The guest's next message is accepted and starts another conversation; nothing said the first ended.
        assert (await guest.answer(await guest.say("one more thing")))["class"] == "StructuredMessage"
        assert not any(is_presence(f, "Disconnect") for f in guest.frames)
    [session] = [s for s in await sessions(http) if s["deployment_id"] == DEFAULTS_DEPLOYMENT]
    assert session["read_only"] is False and session["conversation_id"] != ended
    assert [e["conversation_id"] for e in await ledger(http, kind="conversation.disconnected")] == [ended]


async def test_under_genesys_defaults_presence_clear_is_refused(base: str, http: httpx.AsyncClient) -> None:
    await no_agent(http)
    async with wm_guest(base, deployment_id=DEFAULTS_DEPLOYMENT) as guest:
        await guest.configure()
        await guest.answer(await guest.say("hello"))
        refused = await guest.answer(await guest.event(PRESENCE_CLEAR))
        assert refused["class"] == "string" and refused["code"] == 403
        assert refused["body"] == "Presence events Conversation Clear are not supported"
        closed = await guest.answer(await guest.send("closeSession"))  # what a client does instead
        assert closed["body"]["connected"] is False
    [session] = [s for s in await sessions(http) if s["deployment_id"] == DEFAULTS_DEPLOYMENT]
    assert session["cleared"] is False


@pytest.mark.parametrize(("deployment", "read_only"), [(READ_ONLY_DEPLOYMENT, True), (SEND_DEPLOYMENT, False)])
async def test_a_deployments_disconnect_type_is_its_own(base: str, http: httpx.AsyncClient, deployment: str,
                                                       read_only: bool) -> None:
    # The emulator-wide switch says the opposite: the deployment's own configuration wins.
    await http.patch("/__emulator/config", json={"webmessaging_disconnect_read_only": not read_only})
    async with wm_guest(base, deployment_id=deployment) as guest:
        await _agent_ends(http, guest)
        disconnect = await guest.expect(lambda f: is_presence(f, "Disconnect"))
        assert (disconnect["body"].get("metadata") == {"readOnly": "true"}) is read_only
        refused = await guest.event(PRESENCE_CLEAR)  # Clear is off on both
        assert (await guest.answer(refused))["code"] == 403
