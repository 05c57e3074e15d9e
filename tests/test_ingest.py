"""The ingestion worker in process against a real redis-server: dedup, rejection, reclaim, DLQ."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from parley import keys
from parley.deadletters import DeadLetters
from parley.producer import Producer
from parley.records import Records, State
from parley.settings import Settings
from schemas.events import CommandRejected
from tasks.app import make_config
from tests.support.events import count, read_events
from tests.test_schemas import VALID
from workers.ingest import IngestWorker

OTHER_CONVERSATION = "0b5f3a2e-8c1d-4e6f-9a7b-2c3d4e5f6a7b"


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, claim_idle_ms=100, max_deliveries=3, read_block_ms=10,
                    orgs={"emea": {"api_url": "http://127.0.0.1:9", "client_id": "emea", "client_secret": "s"}})


@pytest.fixture
def celery_app(settings: Settings) -> Iterator[Celery]:
    app = Celery("test-ingest")
    app.conf.update(make_config(settings))
    yield app
    app.close()


def make_worker(client: redis.Redis, settings: Settings, celery_app: Celery, name: str = "c1") -> IngestWorker:
    reader = redis.Redis(connection_pool=redis.ConnectionPool(**{**client.connection_pool.connection_kwargs,
                                                                 "decode_responses": False}))
    worker = IngestWorker(client, settings, celery_app, consumer=name, reader=reader)
    worker.ensure_group()
    return worker


def celery_messages(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(m) for m in client.lrange(keys.CELERY_QUEUE, 0, -1)]


def drain(worker: IngestWorker) -> None:
    while worker.run_once(block_ms=10):
        pass


def test_valid_command_becomes_one_celery_task_with_no_content(redis_client, settings, celery_app) -> None:
    worker = make_worker(redis_client, settings, celery_app)
    Producer(redis_client, settings).submit(VALID["message.send/webmessaging"])
    drain(worker)
    [message] = celery_messages(redis_client)
    headers = message["headers"]
    assert headers["task"] == "parley.message.send"
    assert "Your order shipped" not in json.dumps(message)  # customer text stays in Redis
    body = json.loads(__import__("base64").b64decode(message["body"]))
    ref = body[1]
    assert ref["type"] == "message.send" and ref["idempotency_key"] == "k1"
    assert headers["id"] == ref["command_id"]
    record = Records(redis_client, settings).get(ref["command_id"])
    assert record is not None and record.state is State.accepted and record.dispatched
    assert [e["type"] for e in read_events(redis_client)] == ["command.accepted"]
    assert redis_client.xpending(settings.commands_stream, settings.consumer_group)["pending"] == 0


def test_same_key_twice_is_one_task_and_a_duplicate_event(redis_client, settings, celery_app) -> None:
    worker = make_worker(redis_client, settings, celery_app)
    producer = Producer(redis_client, settings)
    for _ in range(3):
        producer.submit(VALID["cobrowse.start"])
    other_org = dict(VALID["cobrowse.start"], org="emea")  # the key is scoped per org and type
    producer.submit(other_org)
    drain(worker)
    assert len(celery_messages(redis_client)) == 2
    events = read_events(redis_client)
    assert count(events, "command.accepted") == 2
    dups = [e for e in events if e["type"] == "command.duplicate"]
    assert len(dups) == 2 and all(d["original_state"] == "accepted" for d in dups)


def test_garbage_goes_to_dead_letters_with_reason(redis_client, settings, celery_app) -> None:
    worker = make_worker(redis_client, settings, celery_app)
    producer = Producer(redis_client, settings)
    producer.submit_raw("{not json")
    producer.submit_raw(json.dumps({"type": "nope", "idempotency_key": "g1"}))
    producer.submit_raw(json.dumps(dict(VALID["guest.send"], text="")))
    producer.submit_raw("x" * (64 * 1024 + 1))
    redis_client.xadd(settings.commands_stream, {"wrong_field": "1"})
    producer.submit(VALID["cobrowse.end"])  # and the worker keeps going
    drain(worker)
    letters = DeadLetters(redis_client, settings).list()
    reasons = [d.letter.reason for d in letters]
    assert len(reasons) == 5
    assert reasons[0].startswith("not valid JSON")
    assert reasons[1].startswith('unknown command type "nope"')
    assert "text: String should have at least 1 character" in reasons[2]
    assert "the limit is 65536 bytes" in reasons[3]
    assert "no 'command' field" in reasons[4]
    assert letters[0].letter.original == "{not json"  # the original text is kept
    events = read_events(redis_client)
    rejected = [e for e in events if e["type"] == "command.rejected"]
    assert len(rejected) == 5 and rejected[1]["idempotency_key"] == "g1"
    assert all("{not json" not in json.dumps(e) for e in rejected)  # events point to, not copy, the text
    assert count(events, "command.accepted") == 1
    assert len(celery_messages(redis_client)) == 1


def test_rejection_names_the_producers_entry_and_its_dead_letter(redis_client, settings, celery_app) -> None:
    worker = make_worker(redis_client, settings, celery_app)
    entry_id = Producer(redis_client, settings).submit_raw('{"type": "message.send", "text": "\u0000')
    drain(worker)
    [rejected] = [e for e in read_events(redis_client) if e["type"] == "command.rejected"]
    [dead] = DeadLetters(redis_client, settings).list()
    assert rejected["source_entry_id"] == entry_id == dead.letter.source_entry_id
    assert rejected["dead_letter_id"] == dead.entry_id
    assert rejected["command_id"] == dead.letter.command_id and len(rejected["command_id"]) == 32
    assert CommandRejected.model_validate(rejected).dead_letter_id == dead.entry_id


def test_a_command_for_an_unknown_org_is_dead_lettered_naming_the_known_orgs(redis_client, settings,
                                                                             celery_app) -> None:
    worker = make_worker(redis_client, settings, celery_app)
    command = dict(VALID["cobrowse.start"], org="apac")
    entry_id = Producer(redis_client, settings).submit(command)
    drain(worker)
    [rejected] = [e for e in read_events(redis_client) if e["type"] == "command.rejected"]
    assert rejected["reason"] == "unknown org 'apac'; known orgs: default, emea"
    assert rejected["errors"] == [{"field": "org", "message": rejected["reason"]}]
    assert rejected["idempotency_key"] == command["idempotency_key"] and rejected["command_type"] == "cobrowse.start"
    [dead] = DeadLetters(redis_client, settings).list()
    assert dead.letter.source_entry_id == entry_id and json.loads(dead.letter.original) == command
    assert celery_messages(redis_client) == [] and count(read_events(redis_client), "command.accepted") == 0


def test_a_bulk_commands_message_waits_in_the_list_workers_read_last(redis_client, settings, celery_app) -> None:
    worker = make_worker(redis_client, settings, celery_app)
    producer = Producer(redis_client, settings)
    for lane, body in (("bulk", "cobrowse.start"), ("high", "cobrowse.end"), ("normal", "conversation.end")):
        producer.submit(dict(VALID[body], lane=lane, conversation_id=str(uuid.uuid4())))  # three conversations
    drain(worker)
    # kombu's BRPOP names the queue's own list first, then its priority lists: bulk is taken last.
    assert [m["headers"]["task"] for m in celery_messages(redis_client)] == ["parley.conversation.end",
                                                                              "parley.cobrowse.end"]
    [bulk] = redis_client.lrange(f"{keys.CELERY_QUEUE}\x06\x169", 0, -1)
    assert json.loads(bulk)["headers"]["task"] == "parley.cobrowse.start"


def test_an_unknown_lane_is_rejected_naming_the_lanes(redis_client, settings, celery_app) -> None:
    worker = make_worker(redis_client, settings, celery_app)
    Producer(redis_client, settings).submit_raw(json.dumps(dict(VALID["conversation.end"], lane="urgent")))
    drain(worker)
    [rejected] = [e for e in read_events(redis_client) if e["type"] == "command.rejected"]
    [error] = rejected["errors"]
    assert error["field"] == "lane" and "'high', 'normal' or 'bulk'" in error["message"]
    assert "conversation.end" in rejected["reason"] and len(DeadLetters(redis_client, settings).list()) == 1
    assert celery_messages(redis_client) == []


def test_bytes_that_are_not_utf8_are_dead_lettered_and_ingest_goes_on(redis_client, settings, celery_app) -> None:
    worker = make_worker(redis_client, settings, celery_app)
    redis.Redis.from_url(settings.redis_url).xadd(settings.commands_stream, {"command": b'{"type": "\xff\xfe"}'})
    Producer(redis_client, settings).submit(VALID["cobrowse.end"])  # behind it in the stream
    drain(worker)
    [dead] = DeadLetters(redis_client, settings).list()
    assert "not valid UTF-8" in dead.letter.reason and dead.letter.original == '{"type": "\\xff\\xfe"}'
    [rejected] = [e for e in read_events(redis_client) if e["type"] == "command.rejected"]
    assert rejected["dead_letter_id"] == dead.entry_id
    assert count(read_events(redis_client), "command.accepted") == 1 and len(celery_messages(redis_client)) == 1


def test_guest_commands_go_to_the_guest_stream_not_celery(redis_client, settings, celery_app) -> None:
    worker = make_worker(redis_client, settings, celery_app)
    Producer(redis_client, settings).submit(VALID["guest.send"])
    drain(worker)
    assert celery_messages(redis_client) == []
    [(_id, fields)] = redis_client.xrange(keys.GUEST_COMMANDS_STREAM)
    assert fields == {"command_id": fields["command_id"], "type": "guest.send", "session_key": "s1",
                      "org": "default"}  # what routing needs (workers.guest.handoff), never the text


def test_dead_consumer_entries_are_reclaimed_and_not_doubled(redis_client, settings, celery_app) -> None:
    dead = make_worker(redis_client, settings, celery_app, "dead")
    producer = Producer(redis_client, settings)
    for i in range(5):
        producer.submit(dict(VALID["cobrowse.start"], idempotency_key=f"r{i}", conversation_id=str(uuid.UUID(int=i))))
    # The dead consumer read the entries and handled two of them, then died before acking the rest.
    entries = dead._read(">", 10)
    for entry in entries[:2]:
        dead.process(entry)
    # ... and it had claimed a third key and published its task, but died before XACK.
    dead.records.claim(__import__("schemas.validation", fromlist=["x"]).parse_command(entries[2].raw),
                       "crashed-cmd", entries[2].raw, entries[2].entry_id)
    alive = make_worker(redis_client, settings, celery_app, "alive")
    reclaimed = alive.reclaim()
    while not reclaimed:  # entries become claimable once idle for claim_idle_ms (100 ms here)
        reclaimed = alive.reclaim()
    assert {e.entry_id for e in reclaimed} == {e.entry_id for e in entries[2:]}
    alive._process_all(reclaimed)
    assert len(celery_messages(redis_client)) == 5
    assert count(read_events(redis_client), "command.accepted") == 5
    assert redis_client.xpending(settings.commands_stream, settings.consumer_group)["pending"] == 0


def test_own_pending_entries_are_replayed_after_restart(redis_client, settings, celery_app) -> None:
    first = make_worker(redis_client, settings, celery_app, "same")
    Producer(redis_client, settings).submit(VALID["cobrowse.end"])
    assert len(first._read(">", 10)) == 1  # read, then "crashed" before processing
    restarted = make_worker(redis_client, settings, celery_app, "same")
    pending = restarted.own_pending()
    assert len(pending) == 1
    restarted._process_all(pending)
    assert len(celery_messages(redis_client)) == 1


def test_a_restarted_worker_takes_over_the_backlog_before_new_entries_so_order_holds(redis_client, settings,
                                                                                     celery_app) -> None:
    """A restarted ingest worker has a new consumer name: the dead one's pending entries must be claimed
    before newer ones, or a later command on the same conversation would be accepted (and run) first."""
    dead = make_worker(redis_client, settings, celery_app, "host-100")
    producer = Producer(redis_client, settings)
    bodies = [dict(VALID["cobrowse.start"], idempotency_key=f"o{i}") for i in range(3)]
    for body in bodies:
        producer.submit(body)
    entries = dead._read(">", 10)
    dead.process(entries[0])  # then it died, the other two read but not processed
    producer.submit(dict(VALID["conversation.end"], conversation_id=VALID["cobrowse.start"]["conversation_id"]))
    restarted = make_worker(redis_client, settings, celery_app, "host-101")
    restarted.take_over_backlog()
    restarted.run_once(block_ms=10)
    [order] = [k for k in redis_client.scan_iter("parley:order:conversation:*")]
    keys_in_order = [Records(redis_client, settings).get(c).idempotency_key for c in redis_client.lrange(order, 0, -1)]
    assert keys_in_order == ["o0", "o1", "o2", VALID["conversation.end"]["idempotency_key"]]
    assert len(celery_messages(redis_client)) == 1  # only the first: the others wait their turn
    assert redis_client.xpending(settings.commands_stream, settings.consumer_group)["pending"] == 0


def test_entry_delivered_too_often_is_dead_lettered(redis_client, settings, celery_app) -> None:
    worker = make_worker(redis_client, settings, celery_app, "a")
    Producer(redis_client, settings).submit(VALID["cobrowse.end"])
    worker._read(">", 10)
    other = make_worker(redis_client, settings, celery_app, "b")
    entries: list = []
    while len(entries) == 0 or entries[0].deliveries <= settings.max_deliveries:
        entries = other.reclaim() or entries  # each XAUTOCLAIM counts one more delivery
    other._process_all(entries)
    [letter] = DeadLetters(redis_client, settings).list()
    assert "delivered 4 times without being processed" in letter.letter.reason
    assert celery_messages(redis_client) == []


def test_a_bug_in_processing_does_not_stop_the_worker(redis_client, settings, celery_app, monkeypatch) -> None:
    worker = make_worker(redis_client, settings, celery_app)
    producer = Producer(redis_client, settings)
    producer.submit(VALID["cobrowse.start"])
    producer.submit(dict(VALID["cobrowse.end"], conversation_id=OTHER_CONVERSATION))  # not ordered behind it
    calls = {"n": 0}
    real = worker.dispatcher.dispatch

    def flaky(*args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        real(*args)

    monkeypatch.setattr(worker.dispatcher, "dispatch", flaky)
    drain(worker)
    assert len(celery_messages(redis_client)) == 1
    assert redis_client.xpending(settings.commands_stream, settings.consumer_group)["pending"] == 1
    restarted = make_worker(redis_client, settings, celery_app)
    restarted._process_all(restarted.own_pending())
    assert len(celery_messages(redis_client)) == 2


def test_sweeper_redispatches_a_command_whose_celery_message_was_lost(redis_client, settings, celery_app) -> None:
    worker = make_worker(redis_client, settings, celery_app)
    Producer(redis_client, settings).submit(VALID["cobrowse.start"])
    drain(worker)
    [message] = celery_messages(redis_client)
    redis_client.delete(keys.CELERY_QUEUE)  # the broker lost it
    command_id = message["headers"]["id"]
    assert worker.sweeper.sweep() == 0, "not stalled yet"
    redis_client.zadd(keys.INFLIGHT_ZSET, {command_id: 1.0})  # no progress since long ago
    assert worker.sweeper.sweep() == 1
    [again] = celery_messages(redis_client)
    assert again["headers"]["id"] == command_id and again["headers"]["task"] == "parley.cobrowse.start"
    # A command running under its lease, or already finished, is left alone.
    redis_client.delete(keys.CELERY_QUEUE)
    redis_client.zadd(keys.INFLIGHT_ZSET, {command_id: 1.0})
    redis_client.set(keys.execution_lease(command_id), "x")
    assert worker.sweeper.sweep() == 0
    Records(redis_client, settings).set_fields(command_id, state="succeeded")
    assert redis_client.zscore(keys.INFLIGHT_ZSET, command_id) is None


def test_a_stop_that_cuts_a_read_short_is_not_reported_as_an_outage(redis_client, settings, celery_app, monkeypatch,
                                                                     caplog) -> None:
    worker = make_worker(redis_client, settings, celery_app)

    def read_cut_short_by_the_stop() -> int:
        worker.stop_event.set()  # SIGTERM arrived during the blocking read...
        raise redis.ConnectionError("Error while reading from socket")  # ...and broke it

    monkeypatch.setattr(worker, "run_once", read_cut_short_by_the_stop)
    worker.run()
    assert "Redis unavailable" not in caplog.text


def test_handled_entries_leave_the_commands_stream_after_commands_keep_s(redis_client, settings, celery_app) -> None:
    """The stream holds each command's JSON, customer text included: it must not grow forever."""
    kept = make_worker(redis_client, settings, celery_app)
    Producer(redis_client, settings).submit(VALID["message.send/webmessaging"])
    drain(kept)
    assert kept.trim() == 0  # handled, but younger than commands_keep_s (an hour)
    trimming = make_worker(redis_client, settings.model_copy(update={"commands_keep_s": 0}), celery_app)
    assert trimming.trim() == 1
    assert redis_client.xlen(settings.commands_stream) == 0
    assert "Your order shipped" in redis_client.hget(keys.command(celery_messages(redis_client)[0]["headers"]["id"]),
                                                     "body")  # the record keeps the command
