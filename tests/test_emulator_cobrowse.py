"""Cobrowse in a web messaging conversation: start, one live at a time, end."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.emulator_server import agentless_body

pytestmark = pytest.mark.anyio


async def conversation(api: httpx.AsyncClient) -> str:
    response = await api.post("/api/v2/conversations/messages/agentless", json=agentless_body())
    return str(response.json()["conversationId"])


async def start(api: httpx.AsyncClient, cid: str) -> httpx.Response:
    return await api.post(f"/api/v2/conversations/{cid}/cobrowse")


async def kinds(client: httpx.AsyncClient) -> list[str]:
    entries = (await client.get("/__emulator/ledger", params={"kind": ["cobrowse.started", "cobrowse.ended"]})).json()
    return [e["kind"] for e in entries["entries"]]


async def test_start_answers_join_code_and_websocket_url(emu_api: httpx.AsyncClient) -> None:
    cid = await conversation(emu_api)
    response = await start(emu_api, cid)
    assert response.status_code == 200
    session: dict[str, Any] = response.json()
    assert session["joinCode"].isdigit()
    assert session["websocketUrl"].startswith("ws://emulator.test/")
    assert session["communicationType"] == "Message"
    assert session["dateOfferEnds"] > (await emu_api.get(f"/api/v2/conversations/{cid}")).json()["startTime"]
    assert {"id", "selfUri"} <= set(session)


async def test_a_second_start_while_live_conflicts(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    cid = await conversation(emu_api)
    await start(emu_api, cid)
    second = await start(emu_api, cid)
    assert second.status_code == 409
    assert second.json()["code"] == "request.conflict"
    assert await kinds(emu_client) == ["cobrowse.started"]


async def test_ending_cobrowse_by_participant_then_starting_afresh(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient
) -> None:
    cid = await conversation(emu_api)
    first = (await start(emu_api, cid)).json()
    view = (await emu_api.get(f"/api/v2/conversations/cobrowsesessions/{cid}")).json()
    sharer = next(p for p in view["participants"] if p["cobrowseRole"] == "sharer")
    assert sharer["cobrowseSessionId"] == first["id"]
    assert sharer["state"] == "connected"

    ended = await emu_api.patch(
        f"/api/v2/conversations/cobrowsesessions/{cid}/participants/{sharer['id']}", json={"state": "disconnected"}
    )
    assert ended.status_code == 202
    assert await kinds(emu_client) == ["cobrowse.started", "cobrowse.ended"]
    # The messaging conversation itself goes on.
    assert "endTime" not in (await emu_api.get(f"/api/v2/conversations/{cid}")).json()

    again = (await start(emu_api, cid)).json()
    assert again["id"] != first["id"]


async def test_patch_cobrowsesession_state_disconnected_ends_only_the_cobrowse(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient
) -> None:
    cid = await conversation(emu_api)
    await start(emu_api, cid)
    response = await emu_api.patch(f"/api/v2/conversations/cobrowsesessions/{cid}", json={"state": "disconnected"})
    assert response.status_code == 200
    assert "endTime" not in response.json()
    customer = next(p for p in response.json()["participants"] if p["purpose"] == "customer")
    assert customer["cobrowsesessions"][0]["state"] == "disconnected"
    assert await kinds(emu_client) == ["cobrowse.started", "cobrowse.ended"]


async def test_ending_the_conversation_ends_its_cobrowse(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient
) -> None:
    cid = await conversation(emu_api)
    await start(emu_api, cid)
    await emu_api.post(f"/api/v2/conversations/{cid}/disconnect")
    assert await kinds(emu_client) == ["cobrowse.started", "cobrowse.ended"]


async def test_cobrowse_needs_a_live_conversation(emu_api: httpx.AsyncClient) -> None:
    cid = await conversation(emu_api)
    await emu_api.patch(f"/api/v2/conversations/messages/{cid}", json={"state": "disconnected"})
    for target in (cid, "2b7c9e1d-0000-4000-8000-000000000000"):
        response = await start(emu_api, target)
        assert response.status_code == 404
        assert response.json()["code"] == "not.found"


async def test_cobrowse_is_only_for_web_messaging(emu_api: httpx.AsyncClient) -> None:
    chat = await emu_api.post(
        "/api/v2/conversations/chats",
        json={"queueId": "5b7e1d9a-3c2f-4e81-9a6b-d4f08c2e7a13", "provider": "Acme CRM"},
    )
    response = await start(emu_api, chat.json()["id"])
    assert response.status_code == 400


async def test_the_invented_cobrowse_route_does_not_exist(emu_api: httpx.AsyncClient) -> None:
    response = await emu_api.post("/api/v2/conversations/cobrowse", json={"userId": "12345", "sessionId": "abc-123"})
    assert response.status_code == 405
    assert response.json()["status"] == 405


async def test_cobrowse_views_of_a_conversation_without_cobrowse(emu_api: httpx.AsyncClient) -> None:
    cid = await conversation(emu_api)
    assert (await emu_api.get(f"/api/v2/conversations/cobrowsesessions/{cid}")).status_code == 404
    listing = (await emu_api.get("/api/v2/conversations/cobrowsesessions")).json()
    assert listing["entities"] == []
