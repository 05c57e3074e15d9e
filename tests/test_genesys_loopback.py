"""The sync client against a real emulator process over loopback, with a real Redis: what only a
socket shows (timeouts, refused connections) and the Celery tasks' code path end to end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from emulator.fixtures import SEED
from genesys.client import GenesysClient
from genesys.errors import GenesysConnectionError, GenesysTimeout
from harness.emulator_server import EmulatorServer, free_port, running_emulator
from parley.settings import Settings

pytestmark = pytest.mark.integration
WEBMESSAGING = SEED.deployments[0].id


@pytest.fixture(scope="module")
def live_emulator() -> Iterator[EmulatorServer]:
    with running_emulator() as server:
        yield server


def loopback_client(server: EmulatorServer, redis_url: str, **settings: Any) -> GenesysClient:
    config = Settings(
        genesys_api_url=server.base_url,
        genesys_client_id=SEED.client_id,
        genesys_client_secret=SecretStr(SEED.client_secret),
        **settings,
    )
    return GenesysClient(config, redis.Redis.from_url(redis_url))


def test_sync_client_over_loopback(live_emulator: EmulatorServer, redis_url: str) -> None:
    with loopback_client(live_emulator, redis_url) as client:
        sent = client.send_agentless(
            from_address=WEBMESSAGING,
            messenger_type="webmessaging",
            external_contact_id=SEED.external_contacts[1].id,
            text="Hello from the loopback test",
        )
        assert sent.conversation_id
        assert client.get_conversation(sent.conversation_id).id == sent.conversation_id
        assert client.patch_message_conversation(sent.conversation_id).end_time is not None


def test_read_timeout_over_loopback(live_emulator: EmulatorServer, redis_url: str) -> None:
    with live_emulator.client() as admin:
        admin.post(
            "/__emulator/faults",
            json={"path": "/api/v2/conversations/messages/*", "latency_ms": 2000, "times": 1},
        ).raise_for_status()
    client = loopback_client(live_emulator, redis_url, genesys_read_timeout_s=0.3)
    with client, pytest.raises(GenesysTimeout) as caught:
        client.get_message_conversation("00000000-0000-4000-8000-000000000000")
    assert caught.value.method == "GET"


def test_connection_refused(redis_url: str) -> None:
    settings = Settings(
        genesys_api_url=f"http://127.0.0.1:{free_port()}",
        genesys_client_id="x",
        genesys_client_secret=SecretStr("y"),
    )
    with (
        GenesysClient(settings, redis.Redis.from_url(redis_url)) as client,
        pytest.raises(GenesysConnectionError),
    ):
        client.get_conversation("c-1")
