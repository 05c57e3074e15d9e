"""The Celery tasks: one per REST command type, all thin wrappers around :class:`Runner`.

Task names (``parley.message.send``, ...) and keyword arguments (command id, type, org,
idempotency key, target ids) are what Flower shows; the command body never leaves Redis.

A task's Celery state is the command's, so Flower tells the truth: SUCCESS when the command
succeeded, RETRY while a transient error is retried, FAILURE (with Parley's reason and the Genesys
status and code, never customer text) when it failed for good, REVOKED (``expired``) when its
``expires_at`` passed before it ran.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

import redis
from celery import Task
from celery.exceptions import Ignore

import tasks.handlers  # noqa: F401 - registers the command handlers
from parley import keys, metrics
from parley.connections import connect
from parley.records import State
from parley.settings import Settings, get_settings
from schemas.commands import REST_COMMAND_TYPES
from schemas.common import Lane
from tasks.app import app
from tasks.dispatch import CommandRef, dispatch, task_name
from tasks.runner import Outcome, RetryLater, Runner

if TYPE_CHECKING:
    from genesys.client import GenesysClient

log = logging.getLogger("parley.tasks")

REDIS_RETRY_S = 2.0


@cache
def runner() -> Runner:
    """One runner (and Redis pool) per worker process, built on first use after the fork."""
    settings = get_settings()
    return Runner(connect(settings), settings, genesys_factory=_genesys_factory(settings),
                  publish=functools.partial(dispatch, app))


def _genesys_factory(settings: Settings) -> Callable[[str, str, Lane], GenesysClient]:
    """One Genesys client per worker process and org, made on the org's first command: its connection
    pool and token are reused by every task for that org. Each execution (org, command id) gets a view
    of it that does not wait long for the org's rate budget (the command is parked instead, freeing the
    worker, and its place in its lane's line kept for it)."""
    from genesys.client import GenesysClient

    client_of = cache(lambda org: GenesysClient(settings, connect(settings, decode=False), org=org))
    return lambda org, command_id, lane: client_of(org).bounded(settings.genesys_rate_wait_max_s, command_id, lane)


def _execute(task: Task, **ref: Any) -> str:
    settings = get_settings()
    try:
        outcome = runner().run(CommandRef.model_validate(ref))
    except RetryLater as later:
        raise task.retry(countdown=min(later.delay_s, settings.retry_max_delay_s), max_retries=None) from None
    except redis.RedisError as exc:
        # Redis is away (restart, failover): the command's state is safe in it; try again when it is back.
        # Publishing the retry waits for Redis too (task_publish_retry_policy); were it to fail, the
        # sweeper re-dispatches the stalled command.
        log.warning("Redis unavailable while running %s: %s; retrying", ref.get("command_id"), type(exc).__name__)
        metrics.retry(ref.get("type"), "redis_unavailable")
        raise task.retry(countdown=REDIS_RETRY_S, max_retries=None) from None
    if outcome.state is State.accepted:
        raise Ignore()  # not its turn (parley.ordering): it is published again when the earlier command ends
    if outcome.state is State.failed:
        raise CommandFailedForGood(_failure_text(ref.get("command_id"), outcome))
    if outcome.state is State.expired:
        # Celery's own word for a task whose expiry passed; the message is acknowledged, nothing else is sent.
        task.send_event("task-revoked", expired=True, terminated=False, signum=None)
        raise Ignore()
    return outcome.state.value


class CommandFailedForGood(Exception):
    """The command failed for good: the task ends in FAILURE. An expected outcome (``Task.throws``), so
    Celery logs it in one line without a traceback; the reason and hint are in ``command.failed``."""


def _failure_text(command_id: object, outcome: Outcome) -> str:
    text = f"command {command_id} failed: {outcome.reason or 'see its command.failed event'}"
    error = outcome.error
    if error is not None and error.status:
        text += " (Genesys " + " ".join(str(part) for part in (error.status, error.code) if part) + ")"
    return text


def _make_task(command_type: str) -> Task:
    def execute(self: Task, **ref: Any) -> str:
        return _execute(self, **ref)

    execute.__name__ = execute.__qualname__ = "execute_" + command_type.replace(".", "_")
    return app.task(name=task_name(command_type), bind=True, max_retries=None, acks_late=True,
                    throws=(CommandFailedForGood,))(execute)


COMMAND_TASKS: dict[str, Task] = {t: _make_task(t) for t in sorted(REST_COMMAND_TYPES)}


@app.task(name="parley.probe", ignore_result=True)
def probe(nonce: str) -> None:
    """Proves a worker is consuming: `parley status` enqueues it and waits for the key it sets."""
    runner().client.set(keys.probe(nonce), "1", ex=60)
