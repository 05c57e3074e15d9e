"""A command's ending as data (parley.outcomes.Endings), and the same writes run in MULTI/EXEC."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import fakeredis
import pytest

from parley import keys
from parley.outcomes import Endings, Outcomes
from parley.records import CommandRecord, Records, State
from parley.settings import Settings
from schemas.events import CommandResult, GenesysErrorInfo, GuestStarted
from schemas.validation import parse_command

SETTINGS = Settings()


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


def _claimed(client: fakeredis.FakeRedis) -> CommandRecord:
    raw = json.dumps({"type": "guest.send", "session_key": "s1", "text": "hi", "idempotency_key": "k1"})
    records = Records(client, SETTINGS)
    records.claim(parse_command(raw), "c1", raw, "0-1")
    records.set_fields("c1", state=State.running.value, unknown_since="2024-01-01T00:00:00+00:00")
    record = records.get("c1")
    assert record is not None
    return record


def _events(client: fakeredis.FakeRedis) -> list[dict]:
    return [json.loads(fields["event"]) for _id, fields in client.xrange(SETTINGS.events_stream)]


def test_a_success_is_the_record_the_in_flight_index_and_the_events_as_redis_commands(
        client: fakeredis.FakeRedis) -> None:
    record = _claimed(client)
    started = GuestStarted(idempotency_key="k1", command_type="guest.start", command_id="c1", org="o",
                           session_key="s1", protocol="webmessaging")
    writes = Endings(SETTINGS).succeeded(record, CommandResult(message_id="m1"), started)
    assert [w[0] for w in writes] == ["HSET", "ZREM", "HDEL", "XADD", "XADD"]
    assert writes[1] == ("ZREM", keys.INFLIGHT_ZSET, "c1")
    assert writes[3][:6] == ("XADD", SETTINGS.events_stream, "MAXLEN", "~", SETTINGS.events_maxlen, "*")
    assert client.hget(keys.command("c1"), "state") == "running", "data only: nothing was sent"


def test_outcomes_run_the_writes_in_one_transaction_with_the_staged_ones(client: fakeredis.FakeRedis) -> None:
    record = _claimed(client)
    Outcomes(client, SETTINGS).succeed(record, CommandResult(message_id="m1"),
                                       staged=[lambda pipe: pipe.set("lease", "1")])
    stored = client.hgetall(keys.command("c1"))
    assert stored["state"] == "succeeded" and json.loads(stored["result"]) == {"message_id": "m1"}
    assert "unknown_since" not in stored and stored["unknown_outcome"] == "0" and stored["finished_at"]
    assert client.zscore(keys.INFLIGHT_ZSET, "c1") is None and client.get("lease") == "1"
    assert [e["type"] for e in _events(client)] == ["command.accepted", "command.succeeded"]


def test_a_failure_keeps_a_dead_letter_and_an_expiry_says_when(client: fakeredis.FakeRedis) -> None:
    record = _claimed(client)
    outcomes = Outcomes(client, SETTINGS)
    outcomes.fail(record, "refused", GenesysErrorInfo(status=409), "read-only")
    assert client.hget(keys.command("c1"), "state") == "failed"
    failed = _events(client)[-1]
    assert failed["type"] == "command.failed" and failed["hint"] == "read-only"
    ((_id, letter),) = client.xrange(SETTINGS.dead_stream)
    assert json.loads(letter["dead"])["command_id"] == "c1"
    outcomes.expire(record, datetime(2024, 1, 1, tzinfo=UTC))
    assert client.hget(keys.command("c1"), "state") == "expired" and _events(client)[-1]["type"] == "command.expired"
