"""Guest Chat REST: create, JWT, the not-active rule before the event stream, members, messages, leave."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from emulator.fixtures import SEED
from tests.support.emulator_server import QUEUE, asgi_client, guest_chat_body

pytestmark = pytest.mark.anyio

GUEST = "/api/v2/webchat/guest/conversations"


@dataclass
class Chat:
    id: str
    member_id: str
    jwt: str
    http: httpx.AsyncClient  # bearer = the guest JWT

    @property
    def member_path(self) -> str:
        return f"{GUEST}/{self.id}/members/{self.member_id}"


@pytest.fixture
async def chat(emulator_app: Starlette, emu_client: httpx.AsyncClient) -> Any:
    response = await emu_client.post(GUEST, json=guest_chat_body())
    assert response.status_code == 200, response.text
    body = response.json()
    async with asgi_client(emulator_app, token=body["jwt"]) as http:
        yield Chat(body["id"], body["member"]["id"], body["jwt"], http)


async def attach(client: httpx.AsyncClient, chat: Chat) -> None:
    response = await client.post(f"/__emulator/conversations/{chat.id}/guest/attach")
    assert response.status_code == 200


async def kinds(client: httpx.AsyncClient) -> list[str]:
    return [e["kind"] for e in (await client.get("/__emulator/ledger")).json()["entries"]]


def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


# --- create -----------------------------------------------------------------------------------------
async def test_create_answers_id_jwt_event_stream_and_member(emu_client: httpx.AsyncClient) -> None:
    response = await emu_client.post(GUEST, json=guest_chat_body())
    body = response.json()
    assert body["eventStreamUri"] == f"ws://emulator.test/v1/token/{body['jwt']}"
    assert body["member"]["role"] == "CUSTOMER"
    assert body["member"]["displayName"] == "Ada"
    assert body["member"]["state"] == "ALERTING"
    jwt = claims(body["jwt"])
    assert jwt["data"] == {"conv": body["id"], "did": guest_chat_body()["deploymentId"], "sub": body["member"]["id"]}
    assert jwt["exp"] > jwt["iat"]
    assert await kinds(emu_client) == ["guest.session.created"]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"routingTarget": {"targetType": "QUEUE", "targetAddress": QUEUE.id}}, "chat.error.invalid.queue"),
        ({"routingTarget": {"targetType": "QUEUE", "targetAddress": "Nowhere"}}, "chat.error.invalid.queue"),
        ({"routingTarget": None}, "chat.error.notnull.createconversationrequest.routingtarget"),
        ({"memberInfo": {"firstName": "Ada"}}, "chat.error.notnull.createconversationrequest.memberinfo.displayname"),
        ({"organizationId": "1f2e3d4c-0000-4000-8000-000000000000"}, "chat.error.bad.request"),
        ({"deploymentId": SEED.deployments[0].id}, "chat.error.bad.request"),
        (
            {"journeyContext": {"customer": {"id": "c-1"}}},
            "chat.error.notnull.createconversationrequest.journeycontext.customer.customeridtype",
        ),
        ({"memberInfo": {"displayName": "Ada", "nickname": "A"}}, "invalid.property"),
    ],
    ids=[
        "queue-id",
        "unknown-queue",
        "no-target",
        "no-display-name",
        "other-org",
        "messenger-deployment",
        "journey-without-id-type",
        "invented-property",
    ],
)
async def test_create_validation(emu_client: httpx.AsyncClient, overrides: dict[str, Any], code: str) -> None:
    response = await emu_client.post(GUEST, json=guest_chat_body(**overrides))
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert await kinds(emu_client) == []


# --- before the event stream is attached ------------------------------------------------------------------
async def test_sending_before_the_event_stream_is_attached_is_not_active(chat: Chat) -> None:
    for response in (
        await chat.http.post(f"{chat.member_path}/messages", json={"body": "hello?"}),
        await chat.http.post(f"{chat.member_path}/typing"),
    ):
        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "chat.error.conversation.state"
        assert body["message"] == "Conversation State"
        assert body["messageWithParams"] == "Conversation State"
        assert body["messageParams"] == {"message": "The conversation is not active"}


# --- authentication -----------------------------------------------------------------------------------
async def test_guest_calls_need_the_guest_jwt(
    chat: Chat, emu_client: httpx.AsyncClient, emu_api: httpx.AsyncClient
) -> None:
    members = f"{GUEST}/{chat.id}/members"
    assert (await emu_client.get(members)).json()["code"] == "authentication.required"
    assert (await emu_api.get(members)).json()["code"] == "bad.credentials"  # an OAuth token is not a guest JWT
    assert (await chat.http.get(members)).status_code == 200


async def test_the_guest_jwt_expires(chat: Chat, emu_client: httpx.AsyncClient) -> None:
    await emu_client.post("/__emulator/clock", json={"advance_s": claims(chat.jwt)["exp"] - claims(chat.jwt)["iat"]})
    response = await chat.http.get(f"{GUEST}/{chat.id}/members")
    assert response.status_code == 401
    assert response.json()["code"] == "credentials.expired"


async def test_a_jwt_only_opens_its_own_conversation(
    chat: Chat, emulator_app: Starlette, emu_client: httpx.AsyncClient
) -> None:
    other = (await emu_client.post(GUEST, json=guest_chat_body())).json()
    assert (await chat.http.get(f"{GUEST}/{other['id']}/members")).status_code == 403
    async with asgi_client(emulator_app, token=other["jwt"]) as http:
        assert (await http.delete(chat.member_path)).status_code == 403


async def test_a_tampered_jwt_is_refused(chat: Chat, emulator_app: Starlette) -> None:
    header, payload, signature = chat.jwt.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    async with asgi_client(emulator_app, token=forged) as http:
        assert (await http.get(f"{GUEST}/{chat.id}/members")).json()["code"] == "bad.credentials"


# --- an active chat -------------------------------------------------------------------------------------
async def test_attached_chat_carries_messages_both_ways(chat: Chat, emu_client: httpx.AsyncClient) -> None:
    await attach(emu_client, chat)
    sent = await chat.http.post(f"{chat.member_path}/messages", json={"body": "Where is my order?"})
    assert sent.status_code == 200
    assert sent.json()["sender"]["id"] == chat.member_id
    assert sent.json()["bodyType"] == "standard"
    typing = await chat.http.post(f"{chat.member_path}/typing")
    assert typing.status_code == 200

    joined = (await emu_client.post(f"/__emulator/conversations/{chat.id}/agent/join", json={})).json()
    await emu_client.post(f"/__emulator/conversations/{chat.id}/agent/messages", json={"text": "On its way."})

    members = (await chat.http.get(f"{GUEST}/{chat.id}/members")).json()
    roles = {m["role"]: m["state"] for m in members["entities"]}
    assert roles == {"CUSTOMER": "CONNECTED", "AGENT": "CONNECTED"}
    agent = next(m for m in members["entities"] if m["role"] == "AGENT")
    assert agent["id"] == joined["communication_id"]
    assert (await chat.http.get(f"{GUEST}/{chat.id}/members/{agent['id']}")).json()["displayName"] == joined["name"]

    history = (await chat.http.get(f"{GUEST}/{chat.id}/messages")).json()["entities"]
    assert [(m["sender"]["role"], m["body"]) for m in history] == [
        ("CUSTOMER", "Where is my order?"),
        ("AGENT", "On its way."),
    ]
    one = await chat.http.get(f"{GUEST}/{chat.id}/messages/{history[0]['id']}")
    assert one.json()["body"] == "Where is my order?"
    assert await kinds(emu_client) == [
        "guest.session.created",
        "guest.event_stream.attached",
        "guest.message.received",
        "guest.typing",
        "participant.disconnected",
        "agent.joined",
        "agent.message.sent",
    ]


async def test_message_history_paging(chat: Chat, emu_client: httpx.AsyncClient) -> None:
    await attach(emu_client, chat)
    for n in range(3):
        await chat.http.post(f"{chat.member_path}/messages", json={"body": f"line {n}"})
    messages = f"{GUEST}/{chat.id}/messages"
    everything = (await chat.http.get(messages)).json()["entities"]
    first = everything[0]["id"]
    after = (await chat.http.get(messages, params={"after": first})).json()["entities"]
    assert [m["body"] for m in after] == ["line 1", "line 2"]
    newest = (await chat.http.get(messages, params={"sortOrder": "descending", "maxResults": 1})).json()
    assert [m["body"] for m in newest["entities"]] == ["line 2"]
    bad = await chat.http.get(messages, params={"maxResults": 500})
    assert bad.json()["code"] == "invalid.query.param.value"


async def test_a_guest_only_posts_as_itself(chat: Chat, emu_client: httpx.AsyncClient) -> None:
    await attach(emu_client, chat)
    agent = (await emu_client.post(f"/__emulator/conversations/{chat.id}/agent/join", json={})).json()
    response = await chat.http.post(
        f"{GUEST}/{chat.id}/members/{agent['communication_id']}/messages", json={"body": "x"}
    )
    assert response.status_code == 403


async def test_unknown_member_and_message_are_not_found(chat: Chat) -> None:
    unknown = "4d3c2b1a-0000-4000-8000-000000000000"
    assert (await chat.http.get(f"{GUEST}/{chat.id}/members/{unknown}")).json()["code"] == "chat.error.not.found"
    assert (await chat.http.get(f"{GUEST}/{chat.id}/messages/{unknown}")).json()["code"] == "chat.error.not.found"


async def test_message_body_is_required(chat: Chat, emu_client: httpx.AsyncClient) -> None:
    await attach(emu_client, chat)
    response = await chat.http.post(f"{chat.member_path}/messages", json={"bodyType": "standard"})
    assert response.json()["code"] == "chat.error.notnull.createconversationmessagerequest.body"


# --- leaving ---------------------------------------------------------------------------------------------
async def test_leaving_disconnects_the_guest_and_ends_the_session(chat: Chat, emu_client: httpx.AsyncClient) -> None:
    await attach(emu_client, chat)
    response = await chat.http.delete(chat.member_path)
    assert response.status_code == 204
    member = (await chat.http.get(chat.member_path)).json()
    assert member["state"] == "DISCONNECTED"
    assert member["leaveDate"]
    assert "guest.session.ended" in await kinds(emu_client)
    again = await chat.http.post(f"{chat.member_path}/messages", json={"body": "still there?"})
    assert again.json()["code"] == "chat.error.conversation.state"
    assert (await chat.http.delete(chat.member_path)).json()["code"] == "chat.error.member.state"


async def test_the_agent_ending_the_chat_ends_the_guest_session(chat: Chat, emu_client: httpx.AsyncClient) -> None:
    await attach(emu_client, chat)
    await emu_client.post(f"/__emulator/conversations/{chat.id}/agent/join", json={})
    ended = await emu_client.post(f"/__emulator/conversations/{chat.id}/agent/disconnect", json={})
    assert ended.json()["live"] is False
    entries = (await emu_client.get("/__emulator/ledger", params={"kind": "guest.session.ended"})).json()["entries"]
    assert [e["by"] for e in entries] == ["agent"]
    members = await chat.http.get(f"{GUEST}/{chat.id}/members", params={"excludeDisconnectedMembers": "true"})
    assert members.json()["entities"] == []


async def test_an_agent_cannot_join_before_the_chat_is_routed(chat: Chat, emu_client: httpx.AsyncClient) -> None:
    response = await emu_client.post(f"/__emulator/conversations/{chat.id}/agent/join", json={})
    assert response.status_code == 409


async def test_the_platform_api_sees_the_guest_chat(
    chat: Chat, emu_client: httpx.AsyncClient, emu_api: httpx.AsyncClient
) -> None:
    await attach(emu_client, chat)
    agent = (await emu_client.post(f"/__emulator/conversations/{chat.id}/agent/join", json={})).json()
    view = (await emu_api.get(f"/api/v2/conversations/chats/{chat.id}")).json()
    assert {p["purpose"] for p in view["participants"]} == {"customer", "acd", "agent"}
    path = f"/api/v2/conversations/chats/{chat.id}/communications/{agent['communication_id']}/messages"
    sent = await emu_api.post(path, json={"body": "Hello from the agent"})
    assert sent.status_code == 200
    history = (await emu_api.get(f"/api/v2/conversations/chats/{chat.id}/messages")).json()["entities"]
    assert [m["body"] for m in history] == ["Hello from the agent"]
