"""A wrong client id or secret (issue 13.4): Genesys' login host answers 400 ``invalid_client``; Parley
fails the command at once (one token request, no retry, no refresh loop) with a hint naming the settings."""

from __future__ import annotations

import fakeredis
import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from emulator.fixtures import SEED
from genesys.client import AsyncGenesysClient
from genesys.errors import GenesysError
from parley.hints import hint_for
from parley.settings import Settings
from tasks.retry_policy import Permanent, RetryPolicy
from tests.support.emulator_server import _Transport

pytestmark = pytest.mark.anyio

BASE = "http://emulator.test"


class CountingTransport(httpx.AsyncBaseTransport):
    def __init__(self, app: Starlette) -> None:
        self._inner = _Transport(app)
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        response = await self._inner.handle_async_request(request)
        response.request = request
        return response


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [(SEED.client_id, "not-the-secret"), ("0b7c6e1a-1111-4a2b-8c3d-4e5f6a7b8c9d", SEED.client_secret)],
    ids=["wrong-secret", "unknown-client"],
)
async def test_bad_credentials_fail_once_permanently_with_a_hint_naming_the_settings(
    emulator_app: Starlette, client_id: str, secret: str
) -> None:
    settings = Settings(genesys_api_url=BASE, genesys_client_id=client_id, genesys_client_secret=SecretStr(secret))
    transport = CountingTransport(emulator_app)
    async with AsyncGenesysClient(settings, fakeredis.FakeAsyncRedis(), transport=transport) as client:
        with pytest.raises(GenesysError) as caught:
            await client.get_conversation("6f1c2a9e-3b7d-4c55-9a0e-2f4b8d1e7c30")
    error = caught.value
    assert (error.status, error.code) == (400, "invalid_client")
    assert error.message == "client authentication failed"
    assert transport.paths == ["/oauth/token"]  # one token request; the API call was never sent
    decision = RetryPolicy().decide(error, 0, "conversation.end")
    assert isinstance(decision, Permanent)
    hint = hint_for(error.status, error.code)
    assert "PARLEY_GENESYS_CLIENT_ID" in hint and "PARLEY_GENESYS_CLIENT_SECRET" in hint


def test_error_description_alone_is_read_as_the_message() -> None:
    from genesys.wire import error_from_response

    request = httpx.Request("POST", "https://login.mypurecloud.ie/oauth/token")
    response = httpx.Response(400, json={"error": "invalid_client", "error_description": "bad client"}, request=request)
    error = error_from_response(response)
    assert (error.status, error.code, error.message) == (400, "invalid_client", "bad client")
