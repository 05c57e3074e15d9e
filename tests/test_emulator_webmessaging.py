"""Web Messaging guest REST: history and JWT revocation, with the guest JWT."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from tests.support.emulator_server import asgi_client, guest_chat_body

pytestmark = pytest.mark.anyio

HISTORY = "/api/v2/webmessaging/messages"


async def session_jwt(client: httpx.AsyncClient) -> str:
    response = await client.post("/__emulator/webmessaging/sessions", json={})
    assert response.status_code == 201
    return str(response.json()["jwt"])


async def test_history_of_a_new_session_is_an_empty_page(
    emulator_app: Starlette, emu_client: httpx.AsyncClient
) -> None:
    async with asgi_client(emulator_app, token=await session_jwt(emu_client)) as guest:
        page = (await guest.get(HISTORY, params={"pageSize": 10, "pageNumber": 1})).json()
    assert page == {"entities": [], "pageSize": 10, "pageNumber": 1, "total": 0, "pageCount": 0}


async def test_history_needs_a_web_messaging_jwt(
    emulator_app: Starlette, emu_client: httpx.AsyncClient, emu_api: httpx.AsyncClient
) -> None:
    assert (await emu_client.get(HISTORY)).json()["code"] == "authentication.required"
    assert (await emu_api.get(HISTORY)).json()["code"] == "bad.credentials"
    guest_chat_jwt = (await emu_client.post("/api/v2/webchat/guest/conversations", json=guest_chat_body())).json()[
        "jwt"
    ]
    async with asgi_client(emulator_app, token=guest_chat_jwt) as guest:
        assert (await guest.get(HISTORY)).json()["code"] == "bad.credentials"


async def test_a_revoked_jwt_is_refused(emulator_app: Starlette, emu_client: httpx.AsyncClient) -> None:
    async with asgi_client(emulator_app, token=await session_jwt(emu_client)) as guest:
        assert (await guest.delete("/api/v2/webdeployments/token/revoke")).status_code == 204
        assert (await guest.get(HISTORY)).json()["code"] == "bad.credentials"


async def test_revoking_an_expired_jwt_is_400_credentials_expired(
    emulator_app: Starlette, emu_client: httpx.AsyncClient
) -> None:
    jwt = await session_jwt(emu_client)
    await emu_client.post("/__emulator/clock", json={"advance_s": 901})  # the JWT lives 900 s
    async with asgi_client(emulator_app, token=jwt) as guest:
        revoke = await guest.delete("/api/v2/webdeployments/token/revoke")
        history = await guest.get(HISTORY)
    assert (revoke.status_code, revoke.json()["code"]) == (400, "credentials.expired")
    assert (history.status_code, history.json()["code"]) == (401, "credentials.expired")  # other calls: 401


async def test_the_session_is_gone_after_a_reset(emulator_app: Starlette, emu_client: httpx.AsyncClient) -> None:
    jwt = await session_jwt(emu_client)
    await emu_client.post("/__emulator/reset")
    async with asgi_client(emulator_app, token=jwt) as guest:
        response = await guest.get(HISTORY)
    assert (response.status_code, response.json()["code"]) == (404, "session.not.found")


async def test_history_checks_origin_like_the_socket(emulator_app: Starlette, emu_client: httpx.AsyncClient) -> None:
    async with asgi_client(emulator_app, token=await session_jwt(emu_client)) as guest:
        refused = await guest.get(HISTORY, headers={"Origin": "https://elsewhere.example.org"})
        allowed = await guest.get(HISTORY, headers={"Origin": "https://parley.example.com"})
        unnamed = await guest.get(HISTORY)  # no Origin: allowed unless the emulator is told to require one
    assert (refused.status_code, refused.json()["code"]) == (403, "origin.not.allowed")
    assert allowed.status_code == 200 and unnamed.status_code == 200
