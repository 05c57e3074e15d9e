"""Fault injection: next-N, probability, per route, latency, error answers, dropped connections."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.support.emulator_server import agentless_body

pytestmark = pytest.mark.anyio

AGENTLESS = "/api/v2/conversations/messages/agentless"
ANY_CONVERSATION = "/api/v2/conversations/{conversationId}"
UNKNOWN = "/api/v2/conversations/3e4f5a6b-0000-4000-8000-000000000000"


async def inject(client: httpx.AsyncClient, **spec: Any) -> dict[str, Any]:
    response = await client.post("/__emulator/faults", json=spec)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def created(client: httpx.AsyncClient) -> int:
    entries = (await client.get("/__emulator/ledger", params={"kind": "conversation.created"})).json()["entries"]
    return len(entries)


async def test_next_n_calls_get_the_injected_conflict(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient
) -> None:
    await inject(emu_client, method="POST", path=AGENTLESS, status=409, code="request.conflict", times=2)
    statuses = [
        (await emu_api.post(AGENTLESS, json=agentless_body(useExistingActiveConversation=True))).status_code
        for _ in range(3)
    ]
    assert statuses == [409, 409, 200]
    assert await created(emu_client) == 1
    assert (await emu_client.get("/__emulator/faults")).json()["faults"] == []  # retired after N


async def test_an_injected_error_is_a_genesys_error_body(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient
) -> None:
    await inject(emu_client, path=ANY_CONVERSATION, status=409, times=1)
    response = await emu_api.get(UNKNOWN)
    body = response.json()
    assert (body["status"], body["code"]) == (409, "request.conflict")
    assert body["message"] == "The request conflicts with the current state of the target resource."
    assert body["contextId"] == response.headers["ININ-Correlation-Id"]


async def test_an_injected_429_has_retry_after(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    await inject(emu_client, path=ANY_CONVERSATION, status=429, retry_after_s=7, times=1)
    response = await emu_api.get(UNKNOWN)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["code"] == "too.many.requests.retry.after"
    assert response.json()["message"] == "Rate limit exceeded the maximum. Retry the request in [7] seconds"


@pytest.mark.parametrize(("status", "code"), [(500, "internal.server.error"), (503, "service.unavailable")])
async def test_server_errors(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient, status: int, code: str) -> None:
    await inject(emu_client, path="/api/v2/**", status=status, times=1)
    response = await emu_api.get(UNKNOWN)
    assert (response.status_code, response.json()["code"]) == (status, code)


async def test_faults_match_method_and_path_only(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    await inject(emu_client, method="PATCH", path="/api/v2/conversations/messages/*", status=503)
    assert (await emu_api.post(AGENTLESS, json=agentless_body())).status_code == 200  # other path
    assert (await emu_api.get(f"/api/v2/conversations/messages/{UNKNOWN[-36:]}")).status_code == 404  # other method
    patched = await emu_api.patch(f"/api/v2/conversations/messages/{UNKNOWN[-36:]}", json={"state": "disconnected"})
    assert patched.status_code == 503
    assert (await emu_client.get("/__emulator/fixtures")).status_code == 200  # admin is never faulted


@pytest.mark.parametrize(("probability", "expected"), [(0.0, 0), (1.0, 20)])
async def test_probability_extremes(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient, probability: float, expected: int
) -> None:
    fault = await inject(emu_client, path=ANY_CONVERSATION, status=503, probability=probability)
    statuses = [(await emu_api.get(UNKNOWN)).status_code for _ in range(20)]
    assert statuses.count(503) == expected
    listed = (await emu_client.get("/__emulator/faults")).json()["faults"]
    assert [(f["id"], f["matched"], f["fired"]) for f in listed] == [(fault["id"], 20, expected)]


async def test_a_seeded_probability_is_reproducible(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    async def run() -> list[int]:
        await emu_client.delete("/__emulator/faults")
        await inject(emu_client, path=ANY_CONVERSATION, status=503, probability=0.5, seed=42)
        return [(await emu_api.get(UNKNOWN)).status_code for _ in range(40)]

    first, second = await run(), await run()
    assert first == second
    assert 5 < first.count(503) < 35


async def test_latency_delays_the_answer(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    await inject(emu_client, path=ANY_CONVERSATION, latency_ms=300, times=1)
    started = time.monotonic()
    response = await emu_api.get(UNKNOWN)
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 404  # then handled normally


async def test_drop_before_has_no_effect(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    await inject(emu_client, method="POST", path=AGENTLESS, drop="before", times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        await emu_api.post(AGENTLESS, json=agentless_body())
    assert await created(emu_client) == 0


async def test_drop_after_loses_only_the_answer(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    await inject(emu_client, method="POST", path=AGENTLESS, drop="after", times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        await emu_api.post(AGENTLESS, json=agentless_body())
    assert await created(emu_client) == 1
    # The client cannot know; a blind retry meets the live conversation.
    retry = await emu_api.post(AGENTLESS, json=agentless_body())
    assert retry.json()["code"] == "active.conversation"


async def test_hang_holds_the_call_then_drops_it(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    await inject(emu_client, method="POST", path=AGENTLESS, drop="hang", hang_ms=200, times=1)
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        await emu_api.post(AGENTLESS, json=agentless_body())
    assert time.monotonic() - started >= 0.2
    assert await created(emu_client) == 0


async def test_faults_can_be_listed_deleted_and_cleared(emu_client: httpx.AsyncClient) -> None:
    first = await inject(emu_client, path="/oauth/token", status=503)
    await inject(emu_client, path="/api/**", latency_ms=5)
    assert (await emu_client.delete(f"/__emulator/faults/{first['id']}")).status_code == 204
    assert (await emu_client.delete(f"/__emulator/faults/{first['id']}")).status_code == 404
    assert len((await emu_client.get("/__emulator/faults")).json()["faults"]) == 1
    assert (await emu_client.delete("/__emulator/faults")).status_code == 204
    assert (await emu_client.get("/__emulator/faults")).json()["faults"] == []


async def test_the_token_endpoint_can_fail_too(emu_client: httpx.AsyncClient) -> None:
    await inject(emu_client, path="/oauth/token", status=503, times=1)
    response = await emu_client.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert response.status_code == 503


@pytest.mark.parametrize(
    "spec",
    [
        {"path": "/api/**"},
        {"path": "/api/**", "status": 503, "drop": "before"},
        {"path": "/api/**", "status": 200},
        {"path": "/api/**", "code": "request.conflict", "latency_ms": 5},
        {"path": "/api/**", "status": 503, "probability": 2},
        {"path": "/api/**", "status": 503, "retries": 3},
    ],
    ids=["no-effect", "status-and-drop", "not-an-error", "code-without-status", "probability", "unknown-field"],
)
async def test_invalid_fault_specs_are_refused(emu_client: httpx.AsyncClient, spec: dict[str, Any]) -> None:
    response = await emu_client.post("/__emulator/faults", json=spec)
    assert response.status_code == 400
    assert (await emu_client.get("/__emulator/faults")).json()["faults"] == []
