"""The admin surface: fixtures, ledger queries, reset, config, clock; and the routing of invented paths."""

from __future__ import annotations

import uuid

import httpx
import pytest

from emulator.fixtures import SEED, Fixtures
from tests.support.emulator_server import agentless_body

pytestmark = pytest.mark.anyio

AGENTLESS = "/api/v2/conversations/messages/agentless"


async def test_fixtures_are_the_seeded_org(emu_client: httpx.AsyncClient) -> None:
    fixtures = Fixtures.model_validate((await emu_client.get("/__emulator/fixtures")).json())
    assert fixtures == SEED
    for value in (fixtures.client_id, fixtures.organization_id, *(q.id for q in fixtures.queues)):
        uuid.UUID(value)
    assert {d.type for d in fixtures.deployments} == {"webmessaging", "guestchat"}
    assert len({q.name for q in fixtures.queues}) == len(fixtures.queues)


async def test_ledger_filters(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    first = (await emu_api.post(AGENTLESS, json=agentless_body())).json()["conversationId"]
    second = (await emu_api.post(AGENTLESS, json=agentless_body(externalContactId=SEED.external_contacts[1].id))).json()
    everything = (await emu_client.get("/__emulator/ledger")).json()["entries"]
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    assert all({"seq", "at", "kind", "conversation_id"} <= set(e) for e in everything)

    by_conversation = await emu_client.get("/__emulator/ledger", params={"conversation_id": first})
    assert {e["conversation_id"] for e in by_conversation.json()["entries"]} == {first}
    by_kind = await emu_client.get("/__emulator/ledger", params={"kind": "message.sent"})
    assert [e["conversation_id"] for e in by_kind.json()["entries"]] == [first, second["conversationId"]]
    after = await emu_client.get("/__emulator/ledger", params={"after": everything[-2]["seq"]})
    assert after.json()["entries"] == everything[-1:]
    bad = await emu_client.get("/__emulator/ledger", params={"kind": "conversation.exploded"})
    assert bad.status_code == 400


async def test_reset_returns_to_a_fresh_org(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    cid = (await emu_api.post(AGENTLESS, json=agentless_body())).json()["conversationId"]
    await emu_client.post("/__emulator/faults", json={"path": "/api/**", "status": 503, "method": "PATCH"})
    await emu_client.patch("/__emulator/config", json={"rate_limit_per_minute": 1})
    await emu_client.post("/__emulator/clock", json={"advance_s": 100})

    assert (await emu_client.post("/__emulator/reset")).status_code == 204

    assert (await emu_client.get("/__emulator/ledger")).json()["entries"] == []
    assert (await emu_client.get("/__emulator/faults")).json()["faults"] == []
    assert (await emu_client.get("/__emulator/config")).json()["rate_limit_per_minute"] == 300
    # The client's token still works; the conversation is gone and a new one may start.
    assert (await emu_api.get(f"/api/v2/conversations/{cid}")).status_code == 404
    assert (await emu_api.post(AGENTLESS, json=agentless_body())).status_code == 200


async def test_config_patch_is_validated(emu_client: httpx.AsyncClient) -> None:
    assert (await emu_client.patch("/__emulator/config", json={"rate_limit_per_minute": 0})).status_code == 400
    assert (await emu_client.patch("/__emulator/config", json={"fault_seed": 3})).status_code == 400
    tuned = await emu_client.patch("/__emulator/config", json={"cobrowse_offer_s": 30})
    assert tuned.json()["cobrowse_offer_s"] == 30


async def test_the_clock_only_moves_forward(emu_client: httpx.AsyncClient) -> None:
    moved = (await emu_client.post("/__emulator/clock", json={"advance_s": 3600})).json()
    assert moved["offset_s"] == 3600
    assert (await emu_client.post("/__emulator/clock", json={"advance_s": -1})).status_code == 400


async def test_agent_helpers_on_a_messaging_conversation(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient
) -> None:
    cid = (await emu_api.post(AGENTLESS, json=agentless_body())).json()["conversationId"]
    base = f"/__emulator/conversations/{cid}"
    agent = SEED.agents[1]
    joined = (await emu_client.post(f"{base}/agent/join", json={"agent_id": agent.id})).json()
    assert joined["user_id"] == agent.id
    said = await emu_client.post(f"{base}/agent/messages", json={"text": "Hello, Emma here"})
    assert said.status_code == 200
    view = (await emu_api.get(f"/api/v2/conversations/{cid}")).json()
    agent_leg = next(p for p in view["participants"] if p["purpose"] == "agent")
    assert agent_leg["userId"] == agent.id
    assert [m["messageId"] for m in agent_leg["messages"][0]["messages"]] == [said.json()["message_id"]]

    left = (await emu_client.post(f"{base}/agent/disconnect", json={"end_conversation": False})).json()
    assert left["live"] is True
    assert (await emu_client.post(f"{base}/agent/messages", json={"text": "again"})).status_code == 409
    ended = (await emu_client.post(f"{base}/customer/disconnect")).json()
    assert ended["live"] is False


async def test_agent_helpers_refuse_unknowns(emu_client: httpx.AsyncClient, emu_api: httpx.AsyncClient) -> None:
    unknown = "/__emulator/conversations/9a8b7c6d-0000-4000-8000-000000000000/agent/join"
    assert (await emu_client.post(unknown, json={})).status_code == 404
    cid = (await emu_api.post(AGENTLESS, json=agentless_body())).json()["conversationId"]
    no_agent = await emu_client.post(f"/__emulator/conversations/{cid}/agent/join", json={"agent_id": "nobody"})
    assert no_agent.status_code == 404
    not_guest = await emu_client.post(f"/__emulator/conversations/{cid}/guest/attach")
    assert not_guest.status_code == 400


# --- routing --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/api/v2/conversations/messaging", 405),
        ("POST", "/api/v2/conversations/messaging/messages", 404),
        ("POST", "/api/v2/conversations/cobrowse", 405),
        ("DELETE", "/api/v2/webmessaging/guests/0a1b2c3d", 404),
        ("POST", "/api/v2/conversations/messages/x/participants/y/remove", 404),
        ("POST", "/api/v2/conversations/messaging/0a1b2c3d", 404),
        ("GET", "/api/v2/conversations/messaging", 404),  # matches {conversationId}: no such conversation
    ],
)
async def test_invented_routes_do_not_exist(emu_api: httpx.AsyncClient, method: str, path: str, status: int) -> None:
    response = await emu_api.request(method, path, json={"action": "close"})
    assert response.status_code == status
    assert response.json()["status"] == status
    if status == 405:
        assert response.headers["Allow"] == "DELETE, GET, HEAD"


async def test_every_answer_has_a_correlation_id(emu_client: httpx.AsyncClient, emu_api: httpx.AsyncClient) -> None:
    answers = [
        await emu_client.get("/__emulator/fixtures"),
        await emu_client.get("/nowhere"),
        await emu_client.post("/oauth/token", data={"grant_type": "client_credentials"}),
        await emu_api.post(AGENTLESS, json=agentless_body()),
    ]
    ids = [r.headers["ININ-Correlation-Id"] for r in answers]
    assert len(set(ids)) == len(ids)
    for value in ids:
        uuid.UUID(value)
