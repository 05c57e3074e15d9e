"""The webhook relay against a real HTTP endpoint on loopback and a real redis-server."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
from standardwebhooks import Webhook, WebhookVerificationError

from parley import keys
from parley.deadletters import DeadLetters
from parley.events import EventLog
from parley.leases import LeaseLost
from parley.settings import Settings
from parley.webhook_signing import verify_legacy
from schemas.events import CommandAccepted
from workers.webhook import Delivery, WebhookRelay

SECRET = "whsec_" + base64.b64encode(b"parley-test-key-of-32-bytes-long").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"the-old-key-of-24-bytes!").decode()


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


def make_relay(client: redis.Redis, redis_url: str, url: str, secret: str = SECRET, **settings: object) -> WebhookRelay:
    relay = WebhookRelay(client, Settings(redis_url=redis_url, webhook_url=url, webhook_secret=secret, **settings))
    relay.ensure_group()
    return relay


@pytest.fixture
def relay(redis_client: redis.Redis, redis_url: str, receiver: Receiver) -> WebhookRelay:
    return make_relay(redis_client, redis_url, receiver.url, webhook_max_attempts=3)


def emit(client: redis.Redis, redis_url: str, key: str) -> None:
    EventLog(client, Settings(redis_url=redis_url)).append(CommandAccepted(idempotency_key=key, command_id=key))


def test_events_are_posted_in_order_and_signed_per_standard_webhooks(relay, receiver, redis_client, redis_url) -> None:
    for i in range(3):
        emit(redis_client, redis_url, f"k{i}")
    assert relay.run_once(block_ms=10)
    keys = [json.loads(body)["idempotency_key"] for _h, body in receiver.requests]
    assert keys == ["k0", "k1", "k2"]
    for headers, body in receiver.requests:
        event = Webhook(SECRET).verify(body, headers)
        assert headers["webhook-id"] == headers["X-Parley-Event-Id"] == event["id"]
        assert "X-Parley-Signature" not in headers
    headers, body = receiver.requests[0]
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"k0", b"k9"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD_SECRET).verify(body, headers)
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
    (refused, _), (retried, body), _second = receiver.requests
    assert refused["webhook-id"] == retried["webhook-id"] == json.loads(body)["id"]
    assert Webhook(SECRET).verify(body, retried)


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
    relay = make_relay(redis_client, redis_url, "http://127.0.0.1:9/none", webhook_timeout_s=1)
    emit(redis_client, redis_url, "k")
    assert relay.run_once(block_ms=10) is False
    assert redis_client.xpending("parley:events", "parley-webhook")["pending"] == 1


def test_during_a_rotation_receivers_with_the_new_or_the_old_secret_verify(receiver, redis_client, redis_url) -> None:
    relay = make_relay(redis_client, redis_url, receiver.url, f"{SECRET} {OLD_SECRET}")
    emit(redis_client, redis_url, "k")
    assert relay.run_once(block_ms=10)
    [(headers, body)] = receiver.requests
    assert Webhook(SECRET).verify(body, headers) == Webhook(OLD_SECRET).verify(body, headers)


def test_a_plain_secret_keeps_x_parley_signature_for_the_deprecation_period(receiver, redis_client, redis_url,
                                                                           caplog) -> None:
    caplog.set_level(logging.INFO, logger="parley.webhook")
    relay = make_relay(redis_client, redis_url, receiver.url, f"{SECRET} s3cret")
    relay.stop_event.set()
    relay.run()  # logs the deprecation at start, then stops
    emit(redis_client, redis_url, "k")
    assert relay.run_once(block_ms=10)
    [(headers, body)] = receiver.requests
    assert verify_legacy(b"s3cret", headers["X-Parley-Signature"], body)
    assert Webhook(SECRET).verify(body, headers)
    assert Webhook("whsec_" + base64.b64encode(b"s3cret").decode()).verify(body, headers)
    assert "X-Parley-Signature, which is deprecated" in caplog.text


def test_secrets_never_reach_the_log(receiver, redis_client, redis_url, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    relay = make_relay(redis_client, redis_url, receiver.url, f"{SECRET} s3cret", webhook_max_attempts=1)
    relay.stop_event.set()
    relay.run()
    receiver.script = [500]
    emit(redis_client, redis_url, "k")
    relay.run_once(block_ms=10)
    assert "failed (HTTP 500)" in caplog.text
    assert SECRET.removeprefix("whsec_") not in caplog.text and "s3cret" not in caplog.text
    assert "s3cret" not in repr(relay.settings) + repr(relay.signer)


def test_the_relay_loop_beats_for_parley_health(receiver, redis_client, redis_url) -> None:
    from parley.app.health import check

    relay = make_relay(redis_client, redis_url, receiver.url, SECRET)
    assert not check("webhook", redis_client).ok
    relay.run_once = lambda block_ms=1000: relay.stop_event.set() or True  # type: ignore[method-assign]
    relay.run()  # one turn of the loop
    assert check("webhook", redis_client).ok


def test_one_relay_delivers_a_second_stands_by_and_takes_over_without_doubling(receiver, redis_client,
                                                                              redis_url) -> None:
    """Two relays at once would post every event twice, out of order: the lease lets one deliver."""
    first = make_relay(redis_client, redis_url, receiver.url)
    second = make_relay(redis_client, redis_url, receiver.url)
    assert first.lead() and not second.lead()
    emit(redis_client, redis_url, "a")
    emit(redis_client, redis_url, "b")
    receiver.script = [200, 503]  # the first relay delivers a, then b fails: b stays pending
    assert first.run_once(block_ms=10) is False
    redis_client.delete(keys.WEBHOOK_RELAY_LEASE)  # the first relay's host stalled past the lease
    assert second.lead()
    with pytest.raises(LeaseLost):  # the stalled relay wakes up: it may not deliver any more
        first.deliver([Delivery(entry_id="0-1", event_id="x", event_type="command.accepted", body=b"{}",
                                attempts=1)])
    assert second.run_once(block_ms=10)  # b, left pending by the first, is delivered in order
    assert [json.loads(b)["idempotency_key"] for _h, b in receiver.requests] == ["a", "b", "b"]
    assert redis_client.xpending("parley:events", "parley-webhook")["pending"] == 0
