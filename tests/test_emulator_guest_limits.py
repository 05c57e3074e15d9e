"""The emulator's per-deployment guest limits, over a real server on loopback: new guest sockets per
minute (a refused upgrade, HTTP 429) and messages per second per session (TooManyRequestsErrorMessage)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from emulator.fixtures import SEED
from harness.emulator_server import EmulatorServer, running_emulator
from tests.support.emulator_server import WEBMESSAGING_DEPLOYMENT
from tests.support.ws_client import ORIGIN, refused_status, wm_guest, ws_base

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

LIMITED = next(d for d in SEED.deployments if d.messages_per_second == 2)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with running_emulator() as running:
        yield running


async def _no_agent(http: httpx.AsyncClient) -> None:
    (await http.patch("/__emulator/config", json={"auto_agent": False})).raise_for_status()


async def _refused(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    return list((await http.get("/__emulator/ledger", params={"kind": "guest.socket.refused"})).json()["entries"])


def _url(server: EmulatorServer, deployment_id: str) -> str:
    return f"{ws_base(server.base_url)}/v1?deploymentId={deployment_id}"


async def _open_and_close(url: str, times: int) -> None:
    for _ in range(times):
        async with connect(url, additional_headers={"Origin": ORIGIN}):
            pass


def test_the_seeded_limits() -> None:
    default = next(d for d in SEED.deployments if d.id == WEBMESSAGING_DEPLOYMENT)
    assert (default.connections_per_minute, default.messages_per_second) == (1000, 5)
    assert (LIMITED.connections_per_minute, LIMITED.messages_per_second) == (120, 2)


async def test_a_deployment_of_two_messages_a_second_limits_the_third(server: EmulatorServer,
                                                                       http: httpx.AsyncClient) -> None:
    await _no_agent(http)
    async with wm_guest(server.base_url, deployment_id=LIMITED.id) as guest:
        await guest.configure()
        answers = [await guest.answer(await guest.say(f"message {n}")) for n in range(3)]
        assert [a["class"] for a in answers[:2]] == ["StructuredMessage"] * 2
        limited = answers[2]
        assert (limited["class"], limited["code"]) == ("TooManyRequestsErrorMessage", 429)
        assert limited["body"]["errorCode"] == 4029 and limited["body"]["retryAfter"] >= 1
        # Waiting retryAfter gets through (the emulator's clock moves instead of the test sleeping).
        (await http.post("/__emulator/clock", json={"advance_s": limited["body"]["retryAfter"]})).raise_for_status()
        assert (await guest.answer(await guest.say("after waiting")))["class"] == "StructuredMessage"


async def test_new_sockets_past_the_deployments_minute_are_refused_with_429(server: EmulatorServer,
                                                                            http: httpx.AsyncClient) -> None:
    url = _url(server, LIMITED.id)
    await _open_and_close(url, LIMITED.connections_per_minute)
    assert await refused_status(url, {"Origin": ORIGIN}) == 429
    refused = await _refused(http)
    assert len(refused) == 1 and refused[0]["by"] == "system"
    # Per deployment: another deployment's sockets still open.
    async with wm_guest(server.base_url) as guest:
        assert (await guest.configure())["code"] == 200
    # A minute later (the emulator's clock) the deployment accepts again.
    (await http.post("/__emulator/clock", json={"advance_s": 60})).raise_for_status()
    await _open_and_close(url, 1)


async def test_the_refused_upgrade_says_when_to_come_back(server: EmulatorServer, http: httpx.AsyncClient) -> None:
    url = _url(server, LIMITED.id)
    await _open_and_close(url, LIMITED.connections_per_minute)
    with pytest.raises(websockets.InvalidStatus) as refused:
        await _open_and_close(url, 1)
    response = refused.value.response
    assert response.status_code == 429 and 1 <= int(response.headers["Retry-After"]) <= 60


async def test_limits_switched_off_refuse_nothing(server: EmulatorServer, http: httpx.AsyncClient) -> None:
    (await http.patch("/__emulator/config", json={"webmessaging_limits_enabled": False})).raise_for_status()
    await _open_and_close(_url(server, LIMITED.id), LIMITED.connections_per_minute + 5)
    assert await _refused(http) == []
