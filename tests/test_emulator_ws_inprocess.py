"""The guest sockets in process, through Starlette's TestClient (no server, no port).

Used as a context manager the TestClient runs the app's lifespan, so the simulated agent is there;
an abrupt drop has no TCP connection to abort in process and is a close with 1006 instead.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from emulator import EmulatorConfig, create_app
from tests.support.emulator_server import WEBMESSAGING_DEPLOYMENT, guest_chat_body
from tests.support.ws_client import ORIGIN, check_stream_frame, check_webmessaging_frame

with warnings.catch_warnings():
    # Starlette 1.x suggests httpx2 for its TestClient; the project's httpx still works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

URL = f"/v1?deploymentId={WEBMESSAGING_DEPLOYMENT}"


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app(EmulatorConfig(agent_join_delay_s=0.01, agent_reply_delay_s=0.01, heartbeat_interval_s=0.05))
    with TestClient(app) as test_client:
        yield test_client


def receive(ws: Any) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(ws.receive_text())
    check_webmessaging_frame(frame)
    return frame


def test_web_messaging_in_process(client: TestClient) -> None:
    token = str(uuid.uuid4())
    with client.websocket_connect(URL, headers={"Origin": ORIGIN}) as ws:
        ws.send_text(
            json.dumps({"action": "configureSession", "token": token, "deploymentId": WEBMESSAGING_DEPLOYMENT})
        )
        assert receive(ws)["body"]["newSession"] is True
        ws.send_text(json.dumps({"action": "onMessage", "token": token, "message": {"type": "Text", "text": "hi"}}))
        texts = [receive(ws)["body"].get("text") for _ in range(4)]
        assert texts == ["hi", "Hello, my name is Emma Agent. How can I help you?", None, "You said: hi"]
        assert client.post("/__emulator/sockets/drop", json={}).json() == {"sockets": 1}
        with pytest.raises(WebSocketDisconnect) as dropped:
            ws.receive_text()
        assert dropped.value.code == 1006


def test_a_refused_upgrade_in_process(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect), client.websocket_connect(URL, headers={"Origin": "https://evil.example"}):
        pass


def test_guest_chat_stream_in_process(client: TestClient) -> None:
    created = client.post("/api/v2/webchat/guest/conversations", json=guest_chat_body()).json()
    path = created["eventStreamUri"].split("://", 1)[1].split("/", 1)[1]
    with client.websocket_connect("/" + path) as ws:
        frames = []
        while not any(f["eventBody"].get("message") == "WebSocket Heartbeat" for f in frames):
            frame = json.loads(ws.receive_text())
            check_stream_frame(frame)
            frames.append(frame)
        assert frames[0]["eventBody"]["member"] == {"id": created["member"]["id"], "state": "CONNECTED"}
