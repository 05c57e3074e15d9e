"""The guest worker's and the webhook relay's figures, from real workers: open sessions, reconnects,
adoptions and relay latency (guest workers against the emulator on loopback), deliveries, relay latency
and dead letters (the webhook relay against a real endpoint)."""

from __future__ import annotations

import pytest
import redis

from tests.test_guest_worker import (  # noqa: F401 - emulator_server and harness are fixtures used here
    Harness,
    WorkerThread,
    emulator_server,
    fast_settings,
    harness,
    has_message,
    send,
    start,
)
from tests.test_metrics import value
from tests.test_webhook import SECRET, Receiver, emit, make_relay, receiver  # noqa: F401 - receiver: a fixture

pytestmark = pytest.mark.integration


def test_a_guest_session_is_open_relays_reconnects_and_is_adopted_when_its_worker_hands_it_over(
        harness: Harness) -> None:  # noqa: F811 - the fixture imported above
    reconnects = {"protocol": "webmessaging"}
    before = (value("parley_guest_reconnects_total", reconnects), value("parley_guest_adoptions_total"),
              value("parley_guest_relay_seconds_count"))
    first = WorkerThread(harness.settings, fast_settings()).start()
    session = "metrics-guest-1"
    assert harness.run(start(session, first_message="hello"))["type"] == "command.succeeded"
    harness.wait(has_message(session, "You said: hello"))
    assert value("parley_guest_sessions_open") == 1
    assert value("parley_guest_relay_seconds_count") > before[2]  # the agent's answer went through the lane
    assert harness.admin("sockets/drop", {"protocol": "webmessaging", "abrupt": True})["sockets"] >= 1
    assert harness.run(send(session, "after the drop"))["type"] == "command.succeeded"
    harness.wait(has_message(session, "You said: after the drop"))
    assert value("parley_guest_reconnects_total", reconnects) == before[0] + 1
    second = WorkerThread(harness.settings, fast_settings()).start()
    try:
        first.stop()  # hands its session over at once
        assert harness.run(send(session, "to the adopter"))["type"] == "command.succeeded"
        assert value("parley_guest_adoptions_total") == before[1] + 1
    finally:
        second.stop()
    assert value("parley_guest_sessions_open") == 0


def test_webhook_deliveries_count_by_outcome_and_a_refused_event_is_a_dead_letter(
        redis_client: redis.Redis, redis_url: str, receiver: Receiver) -> None:  # noqa: F811
    relay = make_relay(redis_client, redis_url, receiver.url, webhook_max_attempts=2)
    delivered, failed = {"outcome": "delivered"}, {"outcome": "failed"}
    dead = {"stage": "webhook"}
    before = (value("parley_webhook_deliveries_total", delivered), value("parley_webhook_deliveries_total", failed),
              value("parley_webhook_relay_seconds_count"), value("parley_dead_letters_written_total", dead))
    receiver.script = [500]
    emit(redis_client, redis_url, "w1")
    assert not relay.run_once(block_ms=10)
    assert relay.run_once(block_ms=10)
    receiver.script = [500, 503]
    emit(redis_client, redis_url, "w2")
    assert not relay.run_once(block_ms=10)
    assert relay.run_once(block_ms=10)  # the second refusal is the last attempt: dead-lettered, the line moves on
    assert (value("parley_webhook_deliveries_total", delivered), value("parley_webhook_deliveries_total", failed),
            value("parley_webhook_relay_seconds_count"),
            value("parley_dead_letters_written_total", dead)) == (
        before[0] + 1, before[1] + 3, before[2] + 1, before[3] + 1)
    assert value("parley_webhook_relay_seconds_bucket", {"le": "300.0"}) >= 1

