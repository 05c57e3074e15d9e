"""The webhook relay against a real HTTP endpoint on loopback and a real redis-server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis

from parley.deadletters import DeadLetters
from parley.events import EventLog
from parley.settings import Settings
from schemas.events import CommandAccepted
from workers.webhook import WebhookRelay, signature, verify

SECRET = "s3cret"


class Receiver:
    """A webhook endpoint that answers the statuses it is told, then 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(receiver.script.pop(0) if receiver.script else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def relay(redis_client: redis.Redis, redis_url: str, receiver: Receiver) -> WebhookRelay:
    settings = Settings(redis_url=redis_url, webhook_url=receiver.url, webhook_secret=SECRET, webhook_max_attempts=3)
    relay = WebhookRelay(redis_client, settings)
    relay.ensure_group()
    return relay


def emit(client: redis.Redis, redis_url: str, key: str) -> None:
    EventLog(client, Settings(redis_url=redis_url)).append(CommandAccepted(idempotency_key=key, command_id=key))


def test_events_are_posted_in_order_and_signed(relay, receiver, redis_client, redis_url) -> None:
    for i in range(3):
        emit(redis_client, redis_url, f"k{i}")
    assert relay.run_once(block_ms=10)
    keys = [json.loads(body)["idempotency_key"] for _h, body in receiver.requests]
    assert keys == ["k0", "k1", "k2"]
    headers, body = receiver.requests[0]
    assert verify(SECRET.encode(), headers["X-Parley-Signature"], body)
    assert not verify(b"wrong", headers["X-Parley-Signature"], body)
    assert not verify(SECRET.encode(), headers["X-Parley-Signature"], body + b" ")
    assert headers["X-Parley-Event-Id"] == json.loads(body)["id"]
    assert redis_client.xpending("parley:events", "parley-webhook")["pending"] == 0


def test_a_failure_holds_the_line_and_is_retried(relay, receiver, redis_client, redis_url) -> None:
    emit(redis_client, redis_url, "first")
    emit(redis_client, redis_url, "second")
    receiver.script = [503]
    assert relay.run_once(block_ms=10) is False
    assert [json.loads(b)["idempotency_key"] for _h, b in receiver.requests] == ["first"]
    assert relay.backoff_s() == 0.5
    assert relay.run_once(block_ms=10)
    keys = [json.loads(b)["idempotency_key"] for _h, b in receiver.requests]
    assert keys == ["first", "first", "second"]


def test_an_event_refused_too_often_is_dead_lettered(relay, receiver, redis_client, redis_url) -> None:
    emit(redis_client, redis_url, "poison")
    emit(redis_client, redis_url, "next")
    receiver.script = [500, 500, 500]
    while len(receiver.requests) < 3:
        relay.run_once(block_ms=10)
    relay.run_once(block_ms=10)
    [letter] = DeadLetters(redis_client, relay.settings).list()
    assert letter.letter.stage == "webhook" and "3 times: HTTP 500" in letter.letter.reason
    assert json.loads(receiver.requests[-1][1])["idempotency_key"] == "next"


def test_unreachable_endpoint_is_retried(redis_client, redis_url) -> None:
    settings = Settings(redis_url=redis_url, webhook_url="http://127.0.0.1:9/none", webhook_timeout_s=1)
    relay = WebhookRelay(redis_client, settings)
    relay.ensure_group()
    emit(redis_client, redis_url, "k")
    assert relay.run_once(block_ms=10) is False
    assert redis_client.xpending("parley:events", "parley-webhook")["pending"] == 1


def test_signature_format() -> None:
    assert signature(b"k", 1700000000, b"{}").startswith("t=1700000000,v1=")
    assert not verify(b"k", signature(b"k", 1700000000, b"{}"), b"{}", now=1700000000 + 3600)
    assert not verify(b"k", "garbage", b"{}")
