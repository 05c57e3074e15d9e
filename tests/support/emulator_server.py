"""The Genesys Cloud emulator for tests: as a real server on loopback, or in process.

- :func:`running_emulator` starts ``python -m emulator`` on a free loopback port in a subprocess
  and yields once ``GET /__emulator/fixtures`` answers.
- :func:`asgi_client` is an ``httpx.AsyncClient`` on the app in process. It checks every answer
  against Genesys' contract (:func:`check_contract`): the status is documented for the operation,
  the body validates, an error is an ErrorBody whose ``contextId`` is the ``ININ-Correlation-Id``.
  A dropped connection surfaces as ``httpx.RemoteProtocolError``, as it does over a socket.
- As a pytest plugin (registered in tests/conftest.py) it provides the fixtures ``emulator_config``
  (override it for other settings), ``emulator_app``, ``emulator`` (its state), ``emu_client`` (no
  token), ``emu_token`` and ``emu_api`` (bearer token). Async tests use ``pytest.mark.anyio``.
  Against a server on loopback: ``http``, an async client on the emulator of the test module's own
  ``server`` fixture (an :class:`EmulatorServer`), reset before each test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from emulator import EmulatorConfig, create_app
from emulator.errors import CORRELATION_HEADER
from emulator.faults import ConnectionDropped
from emulator.fixtures import SEED, Fixtures
from emulator.runtime import Emulator
from genesys.models import OAuthError, OAuthToken
from harness.emulator_server import EmulatorServer
from tests.support import contract

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "/__emulator"


# --- contract check of every answer ----------------------------------------------------------------
async def check_contract(response: httpx.Response) -> None:
    """Fail unless ``response`` is what Genesys' contract allows for its request."""
    await response.aread()
    request = response.request
    path, method, status = request.url.path, request.method, response.status_code
    correlation = response.headers.get(CORRELATION_HEADER)
    assert correlation, f"{method} {path}: no {CORRELATION_HEADER} header"
    if path.startswith(ADMIN):
        return
    body: Any = response.json() if response.content else ""
    if path == "/oauth/token":
        (OAuthToken if status == 200 else OAuthError).model_validate(body)
        return
    if status >= 400:
        contract.validate_definition(body, "ErrorBody")
        assert body["contextId"] == correlation, f"{method} {path}: contextId is not the correlation id"
        assert body["status"] == status
    try:
        contract.validate_response(method, path, status, body)
    except KeyError:
        # An operation the contract does not have (unknown route, DELETE /conversations/{id}): only
        # an error may come back.
        assert status >= 400, f"{method} {path} is not in the contract but answered {status}"


class _Transport(httpx.ASGITransport):
    """ASGI transport on which an injected drop looks like a socket closed without an answer."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except ConnectionDropped as exc:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request) from exc


def asgi_client(app: Starlette, *, token: str | None = None, check: bool = True) -> httpx.AsyncClient:
    """An in-process client of ``app``; with ``check`` every answer is held to the contract."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    hooks = {"response": [check_contract]} if check else {}
    return httpx.AsyncClient(
        transport=_Transport(app), base_url="http://emulator.test", headers=headers, event_hooks=hooks
    )


async def fetch_token(client: httpx.AsyncClient, fixtures: Fixtures = SEED) -> str:
    response = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(fixtures.client_id, fixtures.client_secret),
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


# --- request bodies ---------------------------------------------------------------------------------
WEBMESSAGING_DEPLOYMENT = SEED.deployments[0].id
GUESTCHAT_DEPLOYMENT = next(d.id for d in SEED.deployments if d.type == "guestchat")
CONTACT = SEED.external_contacts[0].id
QUEUE = SEED.queues[0]


def agentless_body(**overrides: Any) -> dict[str, Any]:
    """A valid web messaging agentless send; ``overrides`` replace fields (None removes one)."""
    body: dict[str, Any] = {
        "fromAddress": WEBMESSAGING_DEPLOYMENT,
        "toAddressMessengerType": "webmessaging",
        "externalContactId": CONTACT,
        "textBody": "Your parcel ships today.",
    }
    return {k: v for k, v in (body | overrides).items() if v is not None}


def guest_chat_body(**overrides: Any) -> dict[str, Any]:
    """A valid Guest Chat create; ``overrides`` replace fields (None removes one)."""
    body: dict[str, Any] = {
        "organizationId": SEED.organization_id,
        "deploymentId": GUESTCHAT_DEPLOYMENT,
        "routingTarget": {"targetType": "QUEUE", "targetAddress": QUEUE.name},
        "memberInfo": {"displayName": "Ada"},
    }
    return {k: v for k, v in (body | overrides).items() if v is not None}


# --- pytest fixtures (use as a plugin) ----------------------------------------------------------------
@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """Override in a test module for other settings."""
    return EmulatorConfig()


@pytest.fixture
def emulator_app(emulator_config: EmulatorConfig) -> Starlette:
    return create_app(emulator_config)


@pytest.fixture
def emulator(emulator_app: Starlette) -> Emulator:
    state: Emulator = emulator_app.state.emulator
    return state


@pytest.fixture
async def emu_client(emulator_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(emulator_app) as http:
        yield http


@pytest.fixture
async def emu_token(emu_client: httpx.AsyncClient) -> str:
    return await fetch_token(emu_client)


@pytest.fixture
async def emu_api(emulator_app: Starlette, emu_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(emulator_app, token=emu_token) as http:
        yield http


@pytest.fixture
async def http(server: EmulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    """An async client on the module's ``server`` (a running emulator), reset first."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5.0) as client:
        (await client.post("/__emulator/reset")).raise_for_status()
        yield client
