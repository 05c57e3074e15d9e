"""The per-token limit: inin-ratelimit-* headers, 429 with Retry-After, one window per token."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from emulator import EmulatorConfig
from tests.support.emulator_server import asgi_client, fetch_token

pytestmark = pytest.mark.anyio

LIMIT = 3
CONVERSATION = "/api/v2/conversations/6a2b9c1d-0000-4000-8000-000000000000"  # unknown: 404s are counted too


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(rate_limit_per_minute=LIMIT)


async def burn(api: httpx.AsyncClient, calls: int) -> list[httpx.Response]:
    return [await api.get(CONVERSATION) for _ in range(calls)]


async def test_every_counted_answer_carries_the_rate_limit_headers(emu_api: httpx.AsyncClient) -> None:
    responses = await burn(emu_api, LIMIT)
    assert [r.headers["inin-ratelimit-count"] for r in responses] == ["1", "2", "3"]
    assert {r.headers["inin-ratelimit-allowed"] for r in responses} == {str(LIMIT)}
    assert 0 < int(responses[-1].headers["inin-ratelimit-reset"]) <= 60


async def test_over_the_limit_is_429_with_retry_after(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient
) -> None:
    await burn(emu_api, LIMIT)
    await emu_client.post("/__emulator/clock", json={"advance_s": 15})
    refused = await emu_api.get(CONVERSATION)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "45"
    body = refused.json()
    assert body["code"] == "too.many.requests.retry.after"
    assert body["message"] == "Rate limit exceeded the maximum. Retry the request in [45] seconds"
    assert body["contextId"] == refused.headers["ININ-Correlation-Id"]


async def test_the_window_resets_after_a_minute(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    await burn(emu_api, LIMIT + 1)
    await emu_client.post("/__emulator/clock", json={"advance_s": 60})
    again = await emu_api.get(CONVERSATION)
    assert again.status_code == 404
    assert again.headers["inin-ratelimit-count"] == "1"


async def test_each_token_has_its_own_window(
    emulator_app: Starlette, emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient
) -> None:
    await burn(emu_api, LIMIT + 1)
    async with asgi_client(emulator_app, token=await fetch_token(emu_client)) as other:
        assert (await other.get(CONVERSATION)).status_code == 404


async def test_the_limit_can_be_lifted(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    await emu_client.patch("/__emulator/config", json={"rate_limit_enabled": False})
    responses = await burn(emu_api, LIMIT * 3)
    assert {r.status_code for r in responses} == {404}
    assert responses[-1].headers["inin-ratelimit-count"] == str(LIMIT * 3)


async def test_admin_and_token_calls_are_not_limited(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    await burn(emu_api, LIMIT + 1)
    for _ in range(LIMIT * 2):
        assert (await emu_client.get("/__emulator/fixtures")).status_code == 200
        assert "inin-ratelimit-count" not in (await emu_client.get("/__emulator/ledger")).headers
    assert await fetch_token(emu_client)


async def test_reset_clears_the_windows(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    await burn(emu_api, LIMIT + 1)
    await emu_client.post("/__emulator/reset")
    assert (await emu_api.get(CONVERSATION)).status_code == 404
