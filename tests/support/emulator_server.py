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

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
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


# --- a real server on loopback ---------------------------------------------------------------------
@dataclass(frozen=True)
class EmulatorServer:
    base_url: str
    process: subprocess.Popen[bytes]

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, **kwargs)

    def fixtures(self) -> Fixtures:
        with self.client() as client:
            return Fixtures.model_validate(client.get(f"{ADMIN}/fixtures").json())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_emulator(
    env: Mapping[str, str] | None = None, *, startup_timeout_s: float = 20.0
) -> Iterator[EmulatorServer]:
    """``python -m emulator`` on a free loopback port; ``env`` adds PARLEY_EMULATOR_* settings."""
    port = free_port()
    full_env = {
        **os.environ,
        "PARLEY_EMULATOR_HOST": "127.0.0.1",
        "PARLEY_EMULATOR_PORT": str(port),
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "emulator"],
            cwd=ROOT,
            env=full_env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        server = EmulatorServer(f"http://127.0.0.1:{port}", process)
        try:
            _wait_ready(server, output, startup_timeout_s)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(server: EmulatorServer, output: Any, timeout_s: float) -> None:
    """Poll the fixtures endpoint (the readiness probe) until it answers or the process dies."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.base_url, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                output.seek(0)
                raise RuntimeError(f"emulator exited with {server.process.returncode}:\n{output.read().decode()}")
            try:
                if client.get(f"{ADMIN}/fixtures").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"emulator not ready on {server.base_url} within {timeout_s}s")


FAST_AGENT_ENV = {"PARLEY_EMULATOR_AGENT_JOIN_DELAY_S": "0.05", "PARLEY_EMULATOR_AGENT_REPLY_DELAY_S": "0.05"}
"""A simulated agent that joins and answers within 50 ms, for socket tests."""


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
