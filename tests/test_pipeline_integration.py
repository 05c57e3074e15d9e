"""End to end with real processes: redis-server, `parley ingest` and `celery worker` subprocesses."""

from __future__ import annotations

import json
import signal

import pytest
import redis

from harness.celery_app import EXECUTIONS
from harness.processes import parley_env, running, start_celery, start_ingest, stop
from parley.producer import Producer
from parley.settings import Settings
from tests.support.events import await_events, count
from tests.test_schemas import VALID

pytestmark = pytest.mark.integration


def commands(n: int, prefix: str) -> list[dict]:
    return [dict(VALID["cobrowse.start"], idempotency_key=f"{prefix}-{i}") for i in range(n)]


def test_n_commands_in_n_executions(redis_url: str, redis_client: redis.Redis) -> None:
    env = parley_env(redis_url)
    ingest, celery = start_ingest(env), start_celery(env)
    with running(ingest, celery):
        producer = Producer(redis_client, Settings(redis_url=redis_url))
        batch = commands(40, "n")
        for c in batch:
            producer.submit(c)
        for c in batch[:10]:  # resubmitted keys: no second execution
            producer.submit(c)
        events = await_events(redis_client, lambda ev: count(ev, "command.succeeded") >= 40
                              and count(ev, "command.duplicate") >= 10)
    executions = redis_client.hgetall(EXECUTIONS)
    assert len(executions) == 40 and set(executions.values()) == {"1"}
    assert count(events, "command.accepted") == 40
    assert count(events, "command.succeeded") == 40


def test_ingest_sigkilled_mid_batch_loses_and_doubles_nothing(redis_url: str, redis_client: redis.Redis) -> None:
    env = parley_env(redis_url)
    celery = start_celery(env)
    ingest = start_ingest(env)
    with running(celery):
        producer = Producer(redis_client, Settings(redis_url=redis_url))
        batch = commands(300, "kill")
        for c in batch:
            producer.submit(c)
        # Kill the ingestion worker once it is part-way through the batch.
        await_events(redis_client, lambda ev: count(ev, "command.accepted") >= 30)
        ingest.send_signal(signal.SIGKILL)
        ingest.wait()
        accepted_at_kill = count(await_events(redis_client, lambda ev: True), "command.accepted")
        assert accepted_at_kill < 300, "the kill must land mid-batch"
        restarted = start_ingest(env)
        with running(restarted):
            events = await_events(redis_client, lambda ev: count(ev, "command.succeeded") >= 300, timeout_s=120)
    executions = redis_client.hgetall(EXECUTIONS)
    assert len(executions) == 300, "nothing lost"
    assert set(executions.values()) == {"1"}, "nothing doubled"
    assert count(events, "command.succeeded") == 300


def test_garbage_in_dead_letters_out_worker_still_up(redis_url: str, redis_client: redis.Redis) -> None:
    env = parley_env(redis_url)
    ingest, celery = start_ingest(env), start_celery(env)
    with running(ingest, celery):
        producer = Producer(redis_client, Settings(redis_url=redis_url))
        for raw in ["{", "null", '{"type":"message.send"}', json.dumps({"type": 1}), "\u00ff" * 70000]:
            producer.submit_raw(raw)
        producer.submit(commands(1, "after-garbage")[0])
        events = await_events(redis_client, lambda ev: count(ev, "command.succeeded") >= 1
                              and count(ev, "command.rejected") >= 5)
        assert ingest.poll() is None, "the ingestion worker survived"
    assert redis_client.xlen("parley:dead") == 5
    assert count(events, "command.rejected") == 5


def test_celery_worker_killed_mid_command_redelivers_once(redis_url: str, redis_client: redis.Redis) -> None:
    # A killed main process leaves its task in Redis' unacked set until the visibility timeout:
    # keep it short here (it must still exceed the time limit and the longest retry delay).
    env = parley_env(redis_url, TEST_HANDLER_DELAY_S="1.5", PARLEY_VISIBILITY_TIMEOUT_S="12",
                     PARLEY_TASK_TIME_LIMIT_S="8", PARLEY_RETRY_MAX_DELAY_S="5")
    ingest, celery = start_ingest(env), start_celery(env, concurrency=1)
    with running(ingest):
        Producer(redis_client, Settings(redis_url=redis_url)).submit(commands(1, "ck")[0])
        await_events(redis_client, lambda ev: count(ev, "command.accepted") >= 1)
        # Wait until the task is running (its record says so), then kill the whole worker.
        while redis_client.hget(next(iter(redis_client.scan_iter("parley:cmd:*"))), "state") != "running":
            redis_client.xread({"parley:events": "$"}, block=50)  # a bounded wait on Redis, not a sleep
        stop(celery, kill=True)
        second = start_celery(env, concurrency=1, name="w2")
        with running(second):
            await_events(redis_client, lambda ev: count(ev, "command.succeeded") >= 1, timeout_s=120)
    assert redis_client.hgetall(EXECUTIONS) == {"default:cobrowse.start:ck-0": "1"}
