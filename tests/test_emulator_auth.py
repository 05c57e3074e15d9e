"""OAuth client credentials and bearer tokens: issue, refuse, expire."""

from __future__ import annotations

import httpx
import pytest

from emulator.fixtures import SEED
from tests.support.emulator_server import fetch_token

pytestmark = pytest.mark.anyio

CONVERSATION = "/api/v2/conversations/5e1b6a3c-0000-4000-8000-000000000000"


async def test_client_credentials_grant_issues_a_bearer_token(emu_client: httpx.AsyncClient) -> None:
    response = await emu_client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(SEED.client_id, SEED.client_secret)
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"].lower() == "bearer"
    assert body["expires_in"] == 86399
    assert len(body["access_token"]) > 40


@pytest.mark.parametrize(
    "auth",
    [(SEED.client_id, "wrong-secret"), ("9f0c1c1e-0000-4000-8000-000000000000", SEED.client_secret), None],
    ids=["bad-secret", "unknown-client", "no-credentials"],
)
async def test_bad_client_credentials_are_refused_with_the_oauth_shape(
    emu_client: httpx.AsyncClient, auth: tuple[str, str] | None
) -> None:
    response = await emu_client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=auth)
    assert response.status_code == 400  # Genesys' login host: 400, not 401 (RFC 6749 section 5.2)
    body = response.json()
    assert body["error"] == "invalid_client"
    assert body["description"] and body["error_description"] == body["description"]


@pytest.mark.parametrize(
    ("form", "error"), [({}, "invalid_request"), ({"grant_type": "password"}, "unsupported_grant_type")]
)
async def test_only_the_client_credentials_grant_is_served(
    emu_client: httpx.AsyncClient, form: dict[str, str], error: str
) -> None:
    response = await emu_client.post("/oauth/token", data=form, auth=(SEED.client_id, SEED.client_secret))
    assert response.status_code == 400
    assert response.json()["error"] == error


async def test_a_call_without_a_token_needs_authentication(emu_client: httpx.AsyncClient) -> None:
    response = await emu_client.get(CONVERSATION)
    assert response.status_code == 401
    assert response.json()["code"] == "authentication.required"


async def test_an_unknown_token_is_bad_credentials(emu_client: httpx.AsyncClient) -> None:
    response = await emu_client.get(CONVERSATION, headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401
    assert response.json()["code"] == "bad.credentials"


async def test_a_token_works_until_it_expires(emu_client: httpx.AsyncClient, emu_api: httpx.AsyncClient) -> None:
    await emu_client.post("/__emulator/clock", json={"advance_s": 86398})
    assert (await emu_api.get(CONVERSATION)).status_code == 404  # authenticated: the conversation is unknown

    await emu_client.post("/__emulator/clock", json={"advance_s": 1})
    response = await emu_api.get(CONVERSATION)
    assert response.status_code == 401
    assert response.json()["code"] == "credentials.expired"


async def test_token_lifetime_is_configurable(emu_client: httpx.AsyncClient) -> None:
    await emu_client.patch("/__emulator/config", json={"token_expires_in_s": 30})
    response = await emu_client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(SEED.client_id, SEED.client_secret)
    )
    assert response.json()["expires_in"] == 30
    token = response.json()["access_token"]
    await emu_client.post("/__emulator/clock", json={"advance_s": 30})
    expired = await emu_client.get(CONVERSATION, headers={"Authorization": f"Bearer {token}"})
    assert expired.json()["code"] == "credentials.expired"


async def test_a_fresh_token_replaces_an_expired_one(emu_client: httpx.AsyncClient, emu_token: str) -> None:
    await emu_client.post("/__emulator/clock", json={"advance_s": 90_000})
    fresh = await fetch_token(emu_client)
    assert fresh != emu_token
    response = await emu_client.get(CONVERSATION, headers={"Authorization": f"Bearer {fresh}"})
    assert response.json()["code"] == "conversation.error.conversation.not.found"


async def test_tokens_never_appear_in_the_ledger(emu_client: httpx.AsyncClient, emu_token: str) -> None:
    ledger = (await emu_client.get("/__emulator/ledger", params={"kind": "token.issued"})).json()
    assert [e["kind"] for e in ledger["entries"]] == ["token.issued"]
    assert emu_token not in str(ledger)
