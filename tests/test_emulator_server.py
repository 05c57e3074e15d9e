"""The emulator as a real server on loopback (``python -m emulator``): smoke test and socket faults."""

from __future__ import annotations

import httpx
import pytest

from harness.emulator_server import EmulatorServer, running_emulator
from tests.support.emulator_server import agentless_body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> EmulatorServer:  # type: ignore[misc]
    with running_emulator({"PARLEY_EMULATOR_RATE_LIMIT_PER_MINUTE": "50"}) as running:
        yield running


@pytest.fixture
def http(server: EmulatorServer) -> httpx.Client:  # type: ignore[misc]
    with server.client(timeout=5.0) as client:
        client.post("/__emulator/reset").raise_for_status()
        fixtures = server.fixtures()
        token = client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(fixtures.client_id, fixtures.client_secret)
        ).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def test_smoke_over_loopback(http: httpx.Client) -> None:
    sent = http.post("/api/v2/conversations/messages/agentless", json=agentless_body())
    assert sent.status_code == 200
    assert sent.headers["inin-ratelimit-allowed"] == "50"  # the env reached the server
    cid = sent.json()["conversationId"]
    assert http.get(f"/api/v2/conversations/{cid}").json()["id"] == cid
    cobrowse = http.post(f"/api/v2/conversations/{cid}/cobrowse").json()
    assert cobrowse["websocketUrl"].startswith(f"ws://{http.base_url.netloc.decode()}/")
    assert http.patch(f"/api/v2/conversations/messages/{cid}", json={"state": "disconnected"}).status_code == 200
    kinds = [e["kind"] for e in http.get("/__emulator/ledger").json()["entries"]]
    assert kinds[:3] == ["token.issued", "conversation.created", "message.sent"]
    assert kinds[-1] == "conversation.disconnected"


@pytest.mark.parametrize("drop", ["before", "after"])
def test_a_dropped_connection_reaches_the_client_as_a_transport_error(http: httpx.Client, drop: str) -> None:
    http.post("/__emulator/faults", json={"path": "/api/v2/conversations/messages/agentless", "drop": drop, "times": 1})
    with pytest.raises(httpx.TransportError):
        http.post("/api/v2/conversations/messages/agentless", json=agentless_body())
    created = http.get("/__emulator/ledger", params={"kind": "conversation.created"}).json()["entries"]
    assert len(created) == (1 if drop == "after" else 0)
    # The server is fine afterwards.
    assert http.get("/__emulator/fixtures").status_code == 200


def test_a_hang_outlasts_the_client_timeout(http: httpx.Client) -> None:
    http.post("/__emulator/faults", json={"path": "/api/**", "drop": "hang", "times": 1})
    with pytest.raises(httpx.ReadTimeout):
        http.get("/api/v2/conversations/1a2b3c4d-0000-4000-8000-000000000000", timeout=0.3)
    assert http.get("/__emulator/fixtures").status_code == 200
