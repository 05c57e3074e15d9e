"""Third-party chats: routing only, no room to post into."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from emulator.fixtures import SEED

pytestmark = pytest.mark.anyio

CHATS = "/api/v2/conversations/chats"
QUEUE = SEED.queues[0]


async def create(api: httpx.AsyncClient, **overrides: Any) -> httpx.Response:
    body = {"queueId": QUEUE.id, "provider": "Acme CRM", "customerName": "Ada", "attributes": {"order": "42"}}
    return await api.post(CHATS, json={k: v for k, v in (body | overrides).items() if v is not None})


async def test_create_routes_a_chat_without_a_room(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    response = await create(emu_api)
    assert response.status_code == 200
    chat = response.json()
    # The create answer is just {id, otherMediaUris: [], selfUri}, as captured from Genesys (issue 13.8).
    assert chat == {"id": chat["id"], "otherMediaUris": [], "selfUri": f"{CHATS}/{chat['id']}"}
    chat = (await emu_api.get(f"{CHATS}/{chat['id']}")).json()  # the read lists the participants
    assert {p["roomId"] for p in chat["participants"]} == {"NONE"}
    acd = next(p for p in chat["participants"] if p["purpose"] == "acd")
    assert acd["queue"]["id"] == QUEUE.id
    customer = next(p for p in chat["participants"] if p["purpose"] == "customer")
    assert customer["attributes"] == {"order": "42"}
    assert customer["provider"] == "Acme CRM"

    entries = (await emu_client.get("/__emulator/ledger", params={"kind": "chat.created"})).json()["entries"]
    assert [(e["conversation_id"], e["queue_id"]) for e in entries] == [(chat["id"], QUEUE.id)]
    assert (await emu_api.get(f"{CHATS}/{chat['id']}")).json()["id"] == chat["id"]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"queueId": None}, "chat.error.notnull.createconversationrequest.queueid"),
        ({"provider": None}, "chat.error.notnull.createconversationrequest.provider"),
        ({"queueId": QUEUE.name}, "chat.error.queue.not.found"),
        ({"queueId": "3c1d2e4f-0000-4000-8000-000000000000"}, "chat.error.queue.not.found"),
        ({"roomId": "abc"}, "invalid.property"),
    ],
    ids=["no-queue", "no-provider", "queue-name", "unknown-queue", "invented-property"],
)
async def test_create_validation(emu_api: httpx.AsyncClient, overrides: dict[str, Any], code: str) -> None:
    response = await create(emu_api, **overrides)
    assert response.status_code == 400
    assert response.json()["code"] == code


async def test_posting_text_into_a_third_party_chat_is_not_found(emu_api: httpx.AsyncClient) -> None:
    chat = (await create(emu_api)).json()
    conversation = (await emu_api.get(f"/api/v2/conversations/{chat['id']}")).json()
    comm = next(p for p in conversation["participants"] if p["purpose"] == "customer")["chats"][0]["id"]
    response = await emu_api.post(f"{CHATS}/{chat['id']}/communications/{comm}/messages", json={"body": "Hello"})
    assert response.status_code == 404
    assert response.json()["code"] == "chat.error.not.found"
    listing = await emu_api.get(f"{CHATS}/{chat['id']}/messages")
    assert listing.json()["code"] == "chat.error.not.found"


async def test_a_chat_ends_by_patch(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    chat = (await create(emu_api)).json()
    response = await emu_api.patch(f"{CHATS}/{chat['id']}", json={"state": "disconnected"})
    assert response.status_code == 200
    assert response.json()["endTime"]
    kinds = [e["kind"] for e in (await emu_client.get("/__emulator/ledger")).json()["entries"]]
    assert kinds[-1] == "conversation.disconnected"


async def test_chat_participant_patch(emu_api: httpx.AsyncClient) -> None:
    created = (await create(emu_api)).json()
    chat = (await emu_api.get(f"{CHATS}/{created['id']}")).json()
    customer = next(p for p in chat["participants"] if p["purpose"] == "customer")
    path = f"{CHATS}/{chat['id']}/participants/{customer['id']}"
    response = await emu_api.patch(path, json={"state": "disconnected", "wrapup": {"code": "resolved"}})
    assert response.status_code == 202
    assert (await emu_api.get(f"{CHATS}/{chat['id']}")).json()["participants"][0]["state"] == "disconnected"


async def test_an_agent_joins_a_third_party_chat(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    chat = (await create(emu_api)).json()
    joined = await emu_client.post(f"/__emulator/conversations/{chat['id']}/agent/join", json={})
    assert joined.status_code == 200
    view = (await emu_api.get(f"{CHATS}/{chat['id']}")).json()
    states = {p["purpose"]: p["state"] for p in view["participants"]}
    assert states == {"customer": "connected", "acd": "disconnected", "agent": "connected"}
    # There is still no room: the agent cannot post either.
    answered = await emu_client.post(f"/__emulator/conversations/{chat['id']}/agent/messages", json={"text": "Hi"})
    assert answered.status_code == 409


async def test_the_users_chat_listing_is_empty_for_client_credentials(emu_api: httpx.AsyncClient) -> None:
    await create(emu_api)
    assert (await emu_api.get(CHATS)).json()["entities"] == []
