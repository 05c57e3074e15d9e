"""The runner's execution guard and retry policy, in process against a real redis-server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

import tasks.commands  # noqa: F401 - registers the real handlers first, so the fixture's fake replaces them
from genesys.errors import GenesysError, GenesysTimeout, RateLimitInfo
from genesys.lanes import line_ticket
from genesys.ratelimit import RateBudgetWait
from parley import keys
from parley.deadletters import DeadLetters
from parley.records import Records, State
from parley.settings import Settings
from parley.state_cache import LeaseTimeout
from schemas.commands import Command
from schemas.events import CommandResult
from schemas.validation import parse_command
from tasks.context import HANDLERS, ExecutionContext, NotYet
from tasks.dispatch import CommandRef
from tasks.runner import RetryLater, Runner
from tests.support.events import read_events
from tests.test_schemas import VALID


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, retry_base_s=1, retry_cap_s=8, retry_max_attempts=3,
                    retry_max_delay_s=30, execution_lease_ms=2000)


@pytest.fixture
def behaviour() -> Iterator[list]:
    """What the fake cobrowse.start handler does on each call: an exception to raise, or succeed."""
    script: list = []
    calls: list[ExecutionContext] = []

    def handler(ctx: ExecutionContext, command: Command) -> CommandResult:
        calls.append(ctx)
        step = script.pop(0) if script else None
        if isinstance(step, BaseException):
            raise step
        return CommandResult(conversation_id=command.targets["conversation_id"], join_code="J1")

    saved = HANDLERS.get("cobrowse.start")
    HANDLERS["cobrowse.start"] = handler
    script.append(calls)  # first element: the calls list, for assertions
    yield script
    if saved is not None:
        HANDLERS["cobrowse.start"] = saved


def accept(client: redis.Redis, settings: Settings, body: dict | None = None) -> CommandRef:
    raw = json.dumps(body or VALID["cobrowse.start"])
    command = parse_command(raw)
    claim = Records(client, settings).claim(command, "cmd1", raw, "1-0")
    return CommandRef(command_id=claim.command_id, type=command.type, org=command.org,
                      idempotency_key=command.idempotency_key, targets=command.targets)


def types(client: redis.Redis) -> list[str]:
    return [e["type"] for e in read_events(client)]


def test_success_is_recorded_once_and_redelivery_is_skipped(redis_client, settings, behaviour) -> None:
    calls = behaviour.pop(0)
    runner = Runner(redis_client, settings)
    ref = accept(redis_client, settings)
    assert runner.run(ref).state is State.succeeded
    assert runner.run(ref).state is State.succeeded  # duplicate delivery: not run again
    assert len(calls) == 1
    assert types(redis_client) == ["command.accepted", "command.succeeded"]
    succeeded = read_events(redis_client)[-1]
    assert succeeded["result"]["join_code"] == "J1" and succeeded["command_id"] == "cmd1"


def test_conflict_is_retried_with_event_then_succeeds(redis_client, settings, behaviour) -> None:
    calls = behaviour.pop(0)
    behaviour.append(GenesysError(409, "request.conflict", "Conflict", context_id="ctx-1"))
    runner = Runner(redis_client, settings)
    ref = accept(redis_client, settings)
    with pytest.raises(RetryLater) as later:
        runner.run(ref)
    assert 0 <= later.value.delay_s <= 1
    retrying = read_events(redis_client)[-1]
    assert retrying["type"] == "command.retrying" and retrying["attempt"] == 1
    assert retrying["error"] == {"status": 409, "code": "request.conflict", "message": "Conflict", "contextId": "ctx-1"}
    assert runner.run(ref).state is State.succeeded
    assert [c.attempt for c in calls] == [1, 2]
    assert not calls[1].recovering  # a 409 means Genesys did nothing


def test_rate_limit_waits_retry_after(redis_client, settings, behaviour) -> None:
    behaviour.pop(0)
    behaviour.append(GenesysError(429, "too.many.requests.retry.after", rate_limit=RateLimitInfo(retry_after_s=7)))
    with pytest.raises(RetryLater) as later:
        Runner(redis_client, settings).run(accept(redis_client, settings))
    assert 7 <= later.value.delay_s <= 8


def test_timeout_marks_outcome_unknown_so_next_attempt_recovers(redis_client, settings, behaviour) -> None:
    calls = behaviour.pop(0)
    behaviour.append(GenesysTimeout("read timeout"))
    runner = Runner(redis_client, settings)
    ref = accept(redis_client, settings)
    with pytest.raises(RetryLater):
        runner.run(ref)
    runner.run(ref)
    assert calls[1].recovering


def died_mid_call(client: redis.Redis, ref: CommandRef) -> None:
    """The record as a worker killed during a Genesys call leaves it: running, nothing else said."""
    client.hset(keys.command(ref.command_id), mapping={"state": "running", "started_at": "2026-01-01T00:00:00+00:00"})


def test_known_error_after_a_dead_attempt_keeps_the_command_recovering(redis_client, settings, behaviour) -> None:
    # The 429 answers this attempt's lookup; it says nothing of what the dead attempt did.
    calls = behaviour.pop(0)
    behaviour.append(GenesysError(429, "too.many.requests", "Rate limited"))
    runner = Runner(redis_client, settings)
    ref = accept(redis_client, settings)
    died_mid_call(redis_client, ref)
    with pytest.raises(RetryLater):
        runner.run(ref)
    runner.run(ref)
    assert calls[0].recovering and calls[1].recovering
    assert calls[1].previous_attempt_started_at == calls[0].previous_attempt_started_at


def test_waiting_for_a_natural_key_keeps_the_command_recovering(redis_client, settings, behaviour) -> None:
    calls = behaviour.pop(0)
    behaviour.append(LeaseTimeout("customer lease still taken"))
    runner = Runner(redis_client, settings)
    ref = accept(redis_client, settings)
    died_mid_call(redis_client, ref)
    with pytest.raises(RetryLater) as later:
        runner.run(ref)
    assert not later.value.counts_as_attempt
    runner.run(ref)
    assert calls[1].recovering and calls[1].unknown_until == calls[0].unknown_until


def test_not_yet_waits_without_an_attempt_and_keeps_the_unknown_window(redis_client, settings, behaviour) -> None:
    calls = behaviour.pop(0)
    behaviour.extend([GenesysTimeout("read timeout"), NotYet(2.5, "analytics lags")])
    runner = Runner(redis_client, settings)
    ref = accept(redis_client, settings)
    with pytest.raises(RetryLater):
        runner.run(ref)
    with pytest.raises(RetryLater) as later:
        runner.run(ref)
    assert later.value.delay_s == 2.5 and not later.value.counts_as_attempt
    runner.run(ref)
    first_unknown = calls[1].unknown_until
    assert first_unknown is not None and calls[2].recovering and calls[2].unknown_until == first_unknown
    assert calls[2].attempt == calls[1].attempt  # the wait used no attempt


def test_permanent_error_fails_with_hint_and_dead_letter(redis_client, settings, behaviour) -> None:
    behaviour.pop(0)
    behaviour.append(GenesysError(400, "not.a.user", "This request requires a user context.", context_id="c9"))
    ref = accept(redis_client, settings)
    assert Runner(redis_client, settings).run(ref).state is State.failed
    failed = read_events(redis_client)[-1]
    assert failed["type"] == "command.failed" and failed["error"]["code"] == "not.a.user"
    assert failed["hint"] and "user" in failed["hint"]
    [dead] = DeadLetters(redis_client, settings).list()
    assert dead.letter.stage == "execute" and dead.letter.command_id == "cmd1"
    assert json.loads(dead.letter.original) == VALID["cobrowse.start"]


def test_retries_exhaust(redis_client, settings, behaviour) -> None:
    behaviour.pop(0)
    behaviour.extend([GenesysError(503, "service.unavailable")] * 3)
    runner = Runner(redis_client, settings)
    ref = accept(redis_client, settings)
    for _ in range(2):
        with pytest.raises(RetryLater):
            runner.run(ref)
    assert runner.run(ref).state is State.failed
    assert types(redis_client).count("command.retrying") == 2
    assert read_events(redis_client)[-1]["attempts"] == 3


def test_expired_command_is_not_executed(redis_client, settings, behaviour) -> None:
    calls = behaviour.pop(0)
    ref = accept(redis_client, settings, dict(VALID["cobrowse.start"], expires_at="2001-01-01T00:00:00Z"))
    assert Runner(redis_client, settings).run(ref).state is State.expired
    assert calls == [] and types(redis_client)[-1] == "command.expired"


def test_concurrent_execution_waits_for_the_lease(redis_client, settings, behaviour) -> None:
    calls = behaviour.pop(0)
    ref = accept(redis_client, settings)
    redis_client.set(keys.execution_lease(ref.command_id), "someone-else", px=1500)
    with pytest.raises(RetryLater) as later:
        Runner(redis_client, settings).run(ref)
    assert not later.value.counts_as_attempt and 0.5 <= later.value.delay_s <= 1.5
    assert calls == []


def test_worker_deaths_are_capped(redis_client, settings, behaviour) -> None:
    behaviour.pop(0)
    ref = accept(redis_client, settings)
    # The last execution died mid-call (still running), and as many had died before it.
    redis_client.hset(keys.command(ref.command_id), mapping={"crashes": settings.max_crash_redeliveries,
                                                             "state": "running"})
    assert Runner(redis_client, settings).run(ref).state is State.failed
    assert "the worker died" in read_events(redis_client)[-1]["reason"]


def test_duplicated_messages_are_not_counted_as_crashes(redis_client, settings, behaviour) -> None:
    # A Redis restart can leave a task's retry and its restored original both queued; the sweeper can
    # re-send while the broker redelivers. Many deliveries, no execution that died: it still runs.
    calls = behaviour.pop(0)
    ref = accept(redis_client, settings)
    redis_client.hset(keys.command(ref.command_id), mapping={"deliveries": 10})
    assert Runner(redis_client, settings).run(ref).state is State.succeeded
    assert len(calls) == 1


def test_failed_command_can_be_replayed_from_dead_letters(redis_client, settings, behaviour) -> None:
    from celery import Celery

    from parley.producer import Producer
    from tasks.app import make_config
    from workers.ingest import IngestWorker

    behaviour.pop(0)
    behaviour.append(GenesysError(403, "missing.permissions"))
    app = Celery("replay")
    app.conf.update(make_config(settings))
    worker = IngestWorker(redis_client, settings, app, consumer="r")
    worker.ensure_group()
    Producer(redis_client, settings).submit(VALID["cobrowse.start"])
    worker.run_once(block_ms=10)
    command_id = redis_client.get(keys.idempotency("default", "cobrowse.start", "k5"))
    ref = CommandRef(command_id=command_id, type="cobrowse.start", org="default", idempotency_key="k5")
    assert Runner(redis_client, settings).run(ref).state is State.failed
    dead = DeadLetters(redis_client, settings)
    [letter] = dead.list()
    # The operator fixed the role's permissions: replay. A failed command had no effect, so its key is freed.
    assert Records(redis_client, settings).release_key_for_replay(command_id)
    dead.replay(letter)
    assert dead.list() == []
    worker.run_once(block_ms=10)
    new_id = redis_client.get(keys.idempotency("default", "cobrowse.start", "k5"))
    assert new_id and new_id != command_id
    assert types(redis_client).count("command.accepted") == 2
    ref2 = ref.model_copy(update={"command_id": new_id})
    assert Runner(redis_client, settings).run(ref2).state is State.succeeded
    # A succeeded command keeps its key: replaying it again would only be a duplicate.
    assert not Records(redis_client, settings).release_key_for_replay(new_id)


def _staging_handler(step: BaseException | None, seen: dict):
    """A cobrowse.start handler that holds the conversation's lease and stages a write, then ``step``."""
    from parley.state_cache import ConversationKey

    def handler(ctx: ExecutionContext, command: Command) -> CommandResult:
        lease = ctx.hold(ConversationKey(conversation_id=command.targets["conversation_id"]), timeout_s=1)
        seen["lease_key"] = lease.key
        seen["held_during"] = ctx.redis.get(lease.key) == str(lease.token)
        ctx.on_success(lambda pipe: pipe.set("test:staged", "written"))
        if step is not None:
            raise step
        return CommandResult(conversation_id=command.targets["conversation_id"], join_code="J1")

    return handler


def test_staged_writes_and_lease_releases_commit_with_success(redis_client, settings, monkeypatch) -> None:
    seen: dict = {}
    monkeypatch.setitem(HANDLERS, "cobrowse.start", _staging_handler(None, seen))
    ref = accept(redis_client, settings)
    assert Runner(redis_client, settings).run(ref).state is State.succeeded
    assert seen["held_during"]
    assert redis_client.get("test:staged") == "written"
    assert not redis_client.exists(seen["lease_key"])  # the next command on the conversation may start
    assert not redis_client.exists(keys.execution_lease(ref.command_id))  # ended with the command


def test_failed_handler_commits_nothing_staged_and_frees_its_leases(redis_client, settings, monkeypatch) -> None:
    seen: dict = {}
    monkeypatch.setitem(HANDLERS, "cobrowse.start", _staging_handler(GenesysTimeout("read timeout"), seen))
    ref = accept(redis_client, settings)
    with pytest.raises(RetryLater):
        Runner(redis_client, settings).run(ref)
    assert not redis_client.exists("test:staged")
    assert not redis_client.exists(seen["lease_key"])
    assert not redis_client.exists(keys.execution_lease(ref.command_id))


def test_permanent_failure_frees_leases_and_ends_the_execution_lease(redis_client, settings, monkeypatch) -> None:
    seen: dict = {}
    monkeypatch.setitem(HANDLERS, "cobrowse.start", _staging_handler(GenesysError(404, "not.found", "gone"), seen))
    ref = accept(redis_client, settings)
    assert Runner(redis_client, settings).run(ref).state is State.failed
    assert not redis_client.exists("test:staged")
    assert not redis_client.exists(seen["lease_key"])
    assert not redis_client.exists(keys.execution_lease(ref.command_id))


# --- issue 15: a command without a rate slot is parked; each command gets its own org's client ------------
def test_a_command_without_a_slot_is_parked_without_an_attempt_or_an_event(redis_client, settings,
                                                                            behaviour) -> None:
    calls = behaviour.pop(0)
    behaviour.append(RateBudgetWait(4.2))
    runner = Runner(redis_client, settings)
    ref = accept(redis_client, settings)
    with pytest.raises(RetryLater) as later:
        runner.run(ref)
    assert later.value.delay_s == 4.2 and not later.value.counts_as_attempt
    record = Records(redis_client, settings).get(ref.command_id)
    assert record is not None and record.state is State.accepted and record.attempts == 0
    assert types(redis_client) == ["command.accepted"]  # no command.retrying: nothing went wrong
    assert runner.run(ref).state is State.succeeded
    assert [c.attempt for c in calls] == [1, 1] and not calls[1].recovering


def test_a_command_that_ends_while_parked_leaves_its_orgs_rate_budget_line(redis_client, settings) -> None:
    ref = accept(redis_client, settings, dict(VALID["cobrowse.start"], expires_at="2001-01-01T00:00:00Z"))
    ticket = line_ticket(settings, "default", ref.command_id)
    assert ticket is not None
    line, member = ticket
    redis_client.zadd(line, {member: 1.0, "another command": 2.0})  # parked earlier, in line for a slot
    assert Runner(redis_client, settings).run(ref).state is State.expired
    assert redis_client.zrange(line, 0, -1) == ["another command"]  # no slot will be handed to it


def test_each_command_gets_the_client_of_its_org(redis_client, settings, behaviour) -> None:
    calls = behaviour.pop(0)
    asked: list[str] = []
    runner = Runner(redis_client, settings, genesys_factory=lambda org, command_id, lane: asked.append(org) or SENTINEL)  # type: ignore[arg-type,func-returns-value]
    runner.run(accept(redis_client, settings, dict(VALID["cobrowse.start"], org="emea")))
    assert calls[0].genesys is SENTINEL and asked == ["emea"]


SENTINEL = object()
