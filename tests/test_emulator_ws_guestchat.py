"""The Guest Chat event stream of the emulator (``eventStreamUri``), over a real server on loopback.

The guest creates the chat and acts over REST; the stream pushes member changes, messages, typing
indicators and heartbeats (every 0.2 s here). Every frame is checked (tests/support/ws_client.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from emulator.app import RedactTokenPaths
from harness.emulator_server import FAST_AGENT_ENV, EmulatorServer, running_emulator
from tests.support.emulator_server import guest_chat_body
from tests.support.ws_client import ChatStream, chat_stream, refused_status

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

GUEST = "/api/v2/webchat/guest/conversations"


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    env = {
        "PARLEY_EMULATOR_HEARTBEAT_INTERVAL_S": "0.2",
        **FAST_AGENT_ENV,
    }
    with running_emulator(env) as running:
        yield running


@dataclass
class Chat:
    id: str
    member_id: str
    jwt: str
    event_stream_uri: str
    http: httpx.AsyncClient

    @property
    def member_path(self) -> str:
        return f"{GUEST}/{self.id}/members/{self.member_id}"

    async def say(self, text: str) -> httpx.Response:
        return await self.http.post(f"{self.member_path}/messages", json={"body": text}, headers=self._auth)

    async def type(self) -> httpx.Response:
        return await self.http.post(f"{self.member_path}/typing", headers=self._auth)

    async def leave(self) -> httpx.Response:
        return await self.http.delete(self.member_path, headers=self._auth)

    async def me(self) -> dict[str, Any]:
        return dict((await self.http.get(self.member_path, headers=self._auth)).json())

    async def lookup(self, member_id: str) -> dict[str, Any]:
        """``GET .../members/{member_id}``: the only way a guest learns who a member is."""
        return dict((await self.http.get(f"{GUEST}/{self.id}/members/{member_id}", headers=self._auth)).json())

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.jwt}"}


@pytest.fixture
async def chat(http: httpx.AsyncClient) -> Chat:
    created = (await http.post(GUEST, json=guest_chat_body())).json()
    return Chat(created["id"], created["member"]["id"], created["jwt"], created["eventStreamUri"], http)


async def kinds(http: httpx.AsyncClient, **params: Any) -> list[str]:
    return [e["kind"] for e in (await http.get("/__emulator/ledger", params=params)).json()["entries"]]


async def agent_joins(stream: ChatStream) -> str:
    """The agent's arrival as the guest sees it: ALERTING, CONNECTED, member-join; its member id."""
    alerting = await stream.expect(lambda f: f["eventBody"].get("member", {}).get("state") == "ALERTING")
    agent_id: str = alerting["eventBody"]["member"]["id"]
    await stream.member(agent_id, "CONNECTED")
    joined = await stream.message(body_type="member-join", sender=agent_id)
    assert joined["eventBody"]["sender"] == {"id": agent_id}  # who it is: GET .../members/{id} only
    return agent_id


async def test_a_full_guest_chat_with_the_auto_agent(chat: Chat, http: httpx.AsyncClient) -> None:
    assert chat.event_stream_uri.startswith("ws://127.0.0.1:") and "/v1/token/" in chat.event_stream_uri
    early = await chat.say("anyone?")  # not routed before the stream attaches
    assert (early.status_code, early.json()["code"]) == (400, "chat.error.conversation.state")

    async with chat_stream(chat.event_stream_uri) as stream:
        connected = await stream.member(chat.member_id, "CONNECTED")
        assert connected["topicName"] == f"v2.conversations.chats.{chat.id}.members"
        assert connected["metadata"]["type"] == "member-change"
        agent_id = await agent_joins(stream)
        greeting = await stream.message(sender=agent_id)
        assert greeting["eventBody"]["body"] == "Hello, my name is Emma Agent. How can I help you?"
        # As on Genesys, frames name the sender and conversation by id alone: no role, name or selfUri.
        assert greeting["eventBody"]["sender"] == {"id": agent_id}
        assert greeting["eventBody"]["conversation"] == {"id": chat.id} and "selfUri" not in greeting["eventBody"]
        member = await chat.lookup(agent_id)
        assert (member["role"], member["displayName"]) == ("AGENT", "Emma Agent")

        assert (await chat.type()).status_code == 200
        mine = await stream.expect(lambda f: f.get("metadata", {}).get("type") == "typing-indicator")
        assert mine["eventBody"]["sender"] == {"id": chat.member_id}

        sent = await chat.say("Where is my parcel?")
        assert sent.status_code == 200
        own = await stream.message(sender=chat.member_id)  # the guest's own line comes back on the stream
        assert own["eventBody"]["id"] == sent.json()["id"] and own["eventBody"]["body"] == "Where is my parcel?"
        typing = await stream.expect(
            lambda f: (
                f.get("metadata", {}).get("type") == "typing-indicator" and f["eventBody"]["sender"]["id"] == agent_id
            )
        )
        assert typing["topicName"] == f"v2.conversations.chats.{chat.id}.messages"
        assert (await stream.message(sender=agent_id))["eventBody"]["body"] == "You said: Where is my parcel?"

        await stream.expect(lambda f: f["eventBody"] == {"message": "WebSocket Heartbeat"}, timeout=2.0)
        await stream.ws.send('{"message":"ping"}')
        pong = await stream.expect(
            lambda f: f["topicName"] == "channel.metadata" and f["eventBody"]["message"] == "pong"
        )
        assert pong == {"topicName": "channel.metadata", "eventBody": {"message": "pong"}}

        assert (await chat.leave()).status_code == 204
        await stream.member(chat.member_id, "DISCONNECTED")
        await stream.member(agent_id, "DISCONNECTED")

    assert await kinds(http, conversation_id=chat.id) == [
        "guest.session.created",
        "guest.event_stream.attached",
        "participant.disconnected",  # the queue leg, routed to the agent
        "agent.joined",
        "agent.message.sent",
        "guest.typing",
        "guest.message.received",
        "agent.typing",
        "agent.message.sent",
        "participant.disconnected",
        "guest.session.ended",
        "participant.disconnected",
        "conversation.disconnected",
    ]


async def test_the_agent_ends_the_chat_when_the_guest_says_bye(chat: Chat, http: httpx.AsyncClient) -> None:
    async with chat_stream(chat.event_stream_uri) as stream:
        agent_id = await agent_joins(stream)
        await stream.message(sender=agent_id)  # greeting
        await chat.say("bye")
        assert (await stream.message(sender=agent_id))["eventBody"]["body"] == "Goodbye!"
        await stream.member(agent_id, "DISCONNECTED")
        await stream.member(chat.member_id, "DISCONNECTED")
    assert (await chat.me())["state"] == "DISCONNECTED"
    assert (await chat.say("hello?")).json()["code"] == "chat.error.conversation.state"


async def test_only_the_guests_valid_jwt_opens_the_stream(chat: Chat, http: httpx.AsyncClient) -> None:
    tampered = chat.event_stream_uri[:-3] + ("abc" if not chat.event_stream_uri.endswith("abc") else "xyz")
    assert await refused_status(tampered) == 403
    assert await refused_status(chat.event_stream_uri.replace(chat.jwt, "not-a-jwt")) == 403
    await http.post("/__emulator/clock", json={"advance_s": 75241})  # the JWT's lifetime
    assert await refused_status(chat.event_stream_uri) == 403
    assert "guest.event_stream.attached" not in await kinds(http)


async def test_closing_the_stream_is_a_drop_and_the_guest_may_reattach(chat: Chat, http: httpx.AsyncClient) -> None:
    await http.patch("/__emulator/config", json={"auto_agent": False})
    async with chat_stream(chat.event_stream_uri) as stream:
        await stream.member(chat.member_id, "CONNECTED")
    await _until(lambda: kinds(http), lambda k: "guest.event_stream.detached" in k)
    assert (await chat.me())["state"] == "CONNECTED"  # still in the chat
    async with chat_stream(chat.event_stream_uri) as stream:
        await http.post(f"/__emulator/conversations/{chat.id}/agent/join", json={})
        agent_id = await agent_joins(stream)
        await http.post(f"/__emulator/conversations/{chat.id}/agent/messages", json={"text": "still here"})
        assert (await stream.message(sender=agent_id))["eventBody"]["body"] == "still here"
    assert (await kinds(http)).count("guest.event_stream.attached") == 1  # routed once


async def test_attaching_after_the_guest_left_tells_so(chat: Chat, http: httpx.AsyncClient) -> None:
    await http.post(f"/__emulator/conversations/{chat.id}/guest/attach")
    assert (await chat.leave()).status_code == 204
    async with chat_stream(chat.event_stream_uri) as stream:
        await stream.member(chat.member_id, "DISCONNECTED")


async def test_the_drop_switch_drops_the_stream(chat: Chat, http: httpx.AsyncClient) -> None:
    async with chat_stream(chat.event_stream_uri) as stream:
        await stream.member(chat.member_id, "CONNECTED")
        dropped = await http.post("/__emulator/sockets/drop", json={"conversation_id": chat.id})
        assert dropped.json() == {"sockets": 1}
        assert await stream.closed() == 1006
    async with chat_stream(chat.event_stream_uri) as stream:
        await stream.expect(lambda f: f["topicName"] == "channel.metadata")  # alive again
        await http.post("/__emulator/sockets/drop", json={"conversation_id": chat.id, "abrupt": False})
        assert await stream.closed() == 1001


async def test_the_drop_switch_can_warn_with_socket_closing(chat: Chat, http: httpx.AsyncClient) -> None:
    async with chat_stream(chat.event_stream_uri) as stream:
        await stream.member(chat.member_id, "CONNECTED")
        await http.post("/__emulator/sockets/drop", json={"conversation_id": chat.id, "socket_closing": True})
        warning = await stream.expect(lambda f: f["topicName"] == "v2.system.socket_closing")
        assert warning["eventBody"] == {}
        assert await stream.closed() == 1006


def test_uvicorn_log_lines_do_not_carry_the_guest_jwt() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("1.2.3.4:5", "/v1/token/a.b.c"),
        None,
    )
    assert RedactTokenPaths().filter(record)
    assert record.getMessage() == '1.2.3.4:5 - "WebSocket /v1/token/<redacted>" [accepted]'


async def test_the_shape_switch_reorders_chat_frames(chat: Chat, http: httpx.AsyncClient) -> None:
    await http.patch("/__emulator/config", json={"auto_agent": False})
    async with chat_stream(chat.event_stream_uri) as stream:
        await stream.member(chat.member_id, "CONNECTED")
        await http.post(f"/__emulator/conversations/{chat.id}/agent/join", json={})
        agent_id = await agent_joins(stream)
        shape = {"conversation_id": chat.id, "mode": "reorder", "frames": 2}
        assert (await http.post("/__emulator/sockets/shape", json=shape)).json() == {"sockets": 1}
        for text in ("first", "second"):
            await http.post(f"/__emulator/conversations/{chat.id}/agent/messages", json={"text": text})
        texts = [(await stream.message(sender=agent_id))["eventBody"]["body"] for _ in range(2)]
        assert texts == ["second", "first"]


async def _until(read: Any, done: Any, timeout: float = 5.0) -> None:
    """Poll an admin read until ``done`` holds (for effects with no frame to await, e.g. a detach)."""
    async with asyncio.timeout(timeout):
        while not done(await read()):
            await asyncio.sleep(0.02)
