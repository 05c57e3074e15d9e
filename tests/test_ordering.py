"""Ordering per conversation and per customer (parley.ordering), on fakeredis: which commands share a key,
joining at the claim, who may run, who runs next when one ends, and the sweeper's healing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis
from kombu.exceptions import OperationalError

import tasks.commands  # noqa: F401 - registers the real handlers first, so the fixture's fakes replace them
from parley import keys
from parley.ordering import Sequencer, order_keys
from parley.records import Records, State
from parley.settings import Settings
from schemas.commands import Command
from schemas.events import CommandResult
from schemas.validation import parse_command
from tasks.context import HANDLERS, ExecutionContext, Refused
from tasks.dispatch import CommandRef
from tasks.runner import Runner
from tests.test_schemas import VALID
from workers import sweeper as sweeper_module
from workers.sweeper import Sweeper

CONVERSATION = "6f1c2a9e-3b7d-4c55-9a0e-2f4b8d1e7c30"
OTHER = "0b5f3a2e-8c1d-4e6f-9a7b-2c3d4e5f6a7b"
DEPLOYMENT = "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607"
CONTACT = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"


@pytest.fixture
def client() -> redis.Redis:
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def settings() -> Settings:
    return Settings(redis_url="redis://unused", stall_redispatch_s=5)


def on(conversation: str, command_type: str = "cobrowse.start", **extra: Any) -> dict[str, Any]:
    return {"type": command_type, "idempotency_key": uuid.uuid4().hex, "conversation_id": conversation, **extra}


def send(contact: str = CONTACT, **extra: Any) -> dict[str, Any]:
    return {"type": "message.send", "idempotency_key": uuid.uuid4().hex, "channel": "webmessaging",
            "from_address": DEPLOYMENT, "external_contact_id": contact, "text": "hello", **extra}


def accept(client: redis.Redis, settings: Settings, body: dict[str, Any]) -> CommandRef:
    """What ingest does: claim the key and join the command's order lists in one step."""
    raw = json.dumps(body)
    command = parse_command(raw)
    claim = Records(client, settings).claim(command, uuid.uuid4().hex, raw, "1-0", order_keys(command))
    return CommandRef(command_id=claim.command_id, type=command.type, org=command.org,
                      idempotency_key=command.idempotency_key)


def keys_of(body: dict[str, Any]) -> list[str]:
    return order_keys(parse_command(json.dumps(body)))


# --- which commands share a key -------------------------------------------------------------------


def test_commands_naming_one_conversation_share_its_key_whatever_their_type() -> None:
    keys_seen = {tuple(keys_of(on(CONVERSATION, t))) for t in ("cobrowse.start", "cobrowse.end", "conversation.end")}
    assert keys_seen == {(keys.order_queue("conversation", "default", CONVERSATION),)}


def test_another_conversation_or_another_org_is_another_key() -> None:
    assert keys_of(on(CONVERSATION)) != keys_of(on(OTHER))
    assert keys_of(on(CONVERSATION)) != keys_of(on(CONVERSATION, org="emea"))


def test_message_sends_to_one_customer_share_a_key_and_it_names_no_address() -> None:
    [first], [second] = keys_of(send(text="a")), keys_of(send(text="b"))
    assert first == second and first.startswith("parley:order:customer:") and CONTACT not in first
    assert keys_of(send(contact=str(uuid.uuid4()))) != [first]
    assert keys_of(send(from_address=str(uuid.uuid4()))) != [first]


def test_a_message_send_naming_a_conversation_waits_for_its_customer_and_that_conversation() -> None:
    assert keys_of(send(conversation_id=CONVERSATION)) == [*keys_of(send()), *keys_of(on(CONVERSATION))]


@pytest.mark.parametrize("name", ["chat.create", "guest.start/webmessaging", "guest.send", "guest.end"])
def test_chat_create_and_guest_commands_are_not_ordered_here(name: str) -> None:
    assert keys_of(VALID[name]) == []


# --- joining, turns, waking -----------------------------------------------------------------------


def test_the_first_command_may_run_and_the_next_one_waits(client, settings) -> None:
    first, second = accept(client, settings, on(CONVERSATION)), accept(client, settings, on(CONVERSATION))
    sequencer = Sequencer(client)
    assert sequencer.ready(first.command_id) and not sequencer.ready(second.command_id)
    assert client.lrange(keys.order_queue("conversation", "default", CONVERSATION), 0, -1) == [
        first.command_id, second.command_id]


def test_a_claim_says_whether_the_command_is_first(client, settings) -> None:
    records = Records(client, settings)
    claims = []
    for body in (on(CONVERSATION), on(CONVERSATION), on(OTHER)):
        raw = json.dumps(body)
        command = parse_command(raw)
        claims.append(records.claim(command, uuid.uuid4().hex, raw, "1-0", order_keys(command)))
    assert [c.ready for c in claims] == [True, False, True]
    assert records.get(claims[1].command_id).order_keys == keys_of(on(CONVERSATION))[0]


def test_a_command_without_keys_or_without_a_record_is_never_held(client, settings) -> None:
    chat = accept(client, settings, VALID["chat.create"])
    assert Sequencer(client).ready(chat.command_id) and Sequencer(client).ready("no-such-command")


def finish(client: redis.Redis, command_id: str, lists: list[str], state: State = State.succeeded) -> None:
    """What an outcome's transaction does for ordering: the record ends and the command leaves its lists."""
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.command(command_id), "state", state.value)
    Sequencer.leave(pipe, command_id, lists)
    pipe.execute()


def test_when_the_first_ends_the_next_is_woken_and_marked_dispatched_until_it_starts(client, settings) -> None:
    body = on(CONVERSATION)
    first, second, third = (accept(client, settings, dict(body, idempotency_key=k)) for k in "abc")
    finish(client, first.command_id, keys_of(body))
    sequencer = Sequencer(client)
    [woken] = sequencer.wake(keys_of(body))
    assert (woken.command_id, woken.type, woken.org, woken.idempotency_key) == (
        second.command_id, "cobrowse.start", "default", "b")
    assert Records(client, settings).get(second.command_id).dispatched
    # Woken again (the first's redelivery: its publish may have been lost with its ack), until it starts.
    assert [w.command_id for w in sequencer.wake(keys_of(body))] == [second.command_id]
    client.hset(keys.command(second.command_id), mapping={"state": "running", "deliveries": 1})
    assert sequencer.wake(keys_of(body)) == []
    assert not sequencer.ready(third.command_id)


@pytest.mark.parametrize("state", [State.failed, State.expired])
def test_a_command_that_failed_for_good_or_expired_lets_the_next_run(client, settings, state) -> None:
    first, second = accept(client, settings, on(CONVERSATION)), accept(client, settings, on(CONVERSATION))
    finish(client, first.command_id, keys_of(on(CONVERSATION)), state)
    assert [w.command_id for w in Sequencer(client).wake(keys_of(on(CONVERSATION)))] == [second.command_id]


def test_a_command_in_two_lists_runs_only_when_first_in_both(client, settings) -> None:
    to_customer = accept(client, settings, send())
    on_conversation = accept(client, settings, on(CONVERSATION))
    both = accept(client, settings, send(conversation_id=CONVERSATION))
    sequencer = Sequencer(client)
    assert not sequencer.ready(both.command_id)
    finish(client, to_customer.command_id, keys_of(send()))
    assert sequencer.wake(keys_of(send())) == [] and not sequencer.ready(both.command_id)
    finish(client, on_conversation.command_id, keys_of(on(CONVERSATION)))
    assert [w.command_id for w in sequencer.wake(keys_of(on(CONVERSATION)))] == [both.command_id]


def test_different_keys_never_wait_for_each_other(client, settings) -> None:
    refs = [accept(client, settings, on(str(uuid.uuid4()))) for _ in range(5)]
    refs += [accept(client, settings, send(contact=str(uuid.uuid4()))) for _ in range(5)]
    assert all(Sequencer(client).ready(ref.command_id) for ref in refs)


def test_waking_drops_a_first_entry_that_ended_or_lost_its_record(client, settings) -> None:
    body = on(CONVERSATION)
    ended, gone, waiting = (accept(client, settings, on(CONVERSATION)) for _ in range(3))
    client.hset(keys.command(ended.command_id), "state", "succeeded")  # ended, but never left (a bug, an old version)
    client.delete(keys.command(gone.command_id))  # retention passed
    assert [w.command_id for w in Sequencer(client).wake(keys_of(body))] == [waiting.command_id]
    assert client.lrange(keys_of(body)[0], 0, -1) == [waiting.command_id]


# --- the runner: a command runs only in its turn, and hands the turn on ------------------------------


@pytest.fixture
def handlers() -> Iterator[list[str]]:
    """Fake cobrowse.start and conversation.end handlers that log what ran; a conversation.end refuses."""
    ran: list[str] = []

    def handler(ctx: ExecutionContext, command: Command) -> CommandResult:
        ran.append(command.idempotency_key)
        if command.type == "conversation.end" and command.idempotency_key.startswith("refuse"):
            raise Refused("refused for the test")
        return CommandResult(conversation_id=command.targets["conversation_id"])

    saved = {t: HANDLERS.get(t) for t in ("cobrowse.start", "conversation.end")}
    HANDLERS.update(dict.fromkeys(saved, handler))
    yield ran
    for t, h in saved.items():
        if h is not None:
            HANDLERS[t] = h


def test_a_delivery_out_of_turn_is_skipped_without_counting_it(client, settings, handlers) -> None:
    accept(client, settings, on(CONVERSATION, idempotency_key="first"))
    second = accept(client, settings, on(CONVERSATION, idempotency_key="second"))
    outcome = Runner(client, settings).run(second)  # a duplicated or re-published message
    assert outcome.state is State.accepted and handlers == []
    record = Records(client, settings).get(second.command_id)
    assert (record.state, record.deliveries, record.attempts) == (State.accepted, 0, 0)


def test_an_ending_publishes_the_next_command_even_after_a_failure_for_good(client, settings, handlers) -> None:
    published: list[CommandRef] = []
    runner = Runner(client, settings, publish=published.append)
    first = accept(client, settings, on(CONVERSATION, "conversation.end", idempotency_key="refuse-1"))
    second = accept(client, settings, on(CONVERSATION, idempotency_key="second"))
    assert runner.run(first).state is State.failed
    assert [p.command_id for p in published] == [second.command_id]
    assert runner.run(published[0]).state is State.succeeded
    assert handlers == ["refuse-1", "second"]
    assert client.exists(keys_of(on(CONVERSATION))[0]) == 0  # the list is gone with its last command


def test_a_redelivery_of_a_finished_command_hands_the_turn_on_if_its_worker_died_before(client, settings, handlers,
                                                                                          monkeypatch) -> None:
    first = accept(client, settings, on(CONVERSATION, idempotency_key="first"))
    second = accept(client, settings, on(CONVERSATION, idempotency_key="second"))
    died = Runner(client, settings)
    monkeypatch.setattr(died.sequencer, "wake", lambda lists: [])  # the worker died right after the outcome
    assert died.run(first).state is State.succeeded
    published: list[CommandRef] = []
    assert Runner(client, settings, publish=published.append).run(first).state is State.succeeded
    assert [p.command_id for p in published] == [second.command_id]


def test_a_publish_lost_after_the_wake_is_made_again_by_the_finished_commands_redelivery(client, settings,
                                                                                          handlers) -> None:
    """A failover can lose the next command's Celery message after its wake was replicated; the finished
    command's ack, sent after that publish, is lost with it, so the finished command is delivered again."""
    first = accept(client, settings, on(CONVERSATION, idempotency_key="first"))
    second = accept(client, settings, on(CONVERSATION, idempotency_key="second"))
    lost: list[CommandRef] = []
    assert Runner(client, settings, publish=lost.append).run(first).state is State.succeeded
    assert [p.command_id for p in lost] == [second.command_id]  # ... and this message never reached the broker
    published: list[CommandRef] = []
    Runner(client, settings, publish=published.append).run(first)
    assert [p.command_id for p in published] == [second.command_id]


def test_a_publish_that_fails_fails_the_delivery_so_the_next_one_publishes_it(client, settings, handlers) -> None:
    first = accept(client, settings, on(CONVERSATION, idempotency_key="first"))
    second = accept(client, settings, on(CONVERSATION, idempotency_key="second"))

    def broker_away(ref: CommandRef) -> None:
        raise OperationalError("Error 111 connecting to the broker")

    with pytest.raises(redis.ConnectionError):  # tasks.commands retries the task on a Redis error
        Runner(client, settings, publish=broker_away).run(first)
    assert Records(client, settings).get(first.command_id).state is State.succeeded
    published: list[CommandRef] = []
    Runner(client, settings, publish=published.append).run(first)
    assert [p.command_id for p in published] == [second.command_id]


# --- the sweeper: a command waiting past its turn --------------------------------------------------


def test_the_sweeper_publishes_whose_turn_it_is_never_a_waiting_command(client, settings, monkeypatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(sweeper_module, "dispatch", lambda _app, ref: sent.append(ref.command_id))
    first, second, third = (accept(client, settings, on(CONVERSATION)) for _ in range(3))
    client.hset(keys.command(first.command_id), "dispatched", "1")
    client.zadd(keys.INFLIGHT_ZSET, {r.command_id: 1 for r in (first, second, third)})  # long idle
    finish(client, first.command_id, [])  # ended, but its worker died before it left the list
    assert Sweeper(client, settings, celery_app=None).sweep() == 1  # type: ignore[arg-type]
    assert sent == [second.command_id]
    assert client.lrange(keys_of(on(CONVERSATION))[0], 0, -1) == [second.command_id, third.command_id]
