"""Handing a command to Celery: one message per execution, carrying a reference, never the body."""

from __future__ import annotations

import json

from celery import Celery
from pydantic import BaseModel, ConfigDict, Field

from parley import keys
from schemas.common import Lane


class CommandRef(BaseModel):
    """What a Celery message carries (and Flower shows): identity and target ids, never content."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command_id: str
    type: str
    org: str
    idempotency_key: str
    targets: dict[str, str] = Field(default_factory=dict)


def task_name(command_type: str) -> str:
    return f"parley.{command_type}"


BROKER_PRIORITY: dict[Lane, int] = {Lane.high: 0, Lane.normal: 0, Lane.bulk: 9}
"""kombu's Redis transport keeps a list per priority step (0 is the queue's own list, 9 the last) and its
workers read them in that order: a ``bulk`` command's message is taken only when no ``high`` or
``normal`` one waits, so a campaign submitted at once does not hold up an urgent command while the workers
park it. High and normal share the queue's own list (their order for the rate budget is
:mod:`genesys.lanes`'); a retry keeps its message's priority."""


def dispatch(celery_app: Celery, ref: CommandRef, lane: Lane = Lane.normal) -> None:
    """Publish the task that executes ``ref``; the task id is the command id (one per command in Flower)."""
    kwargs = ref.model_dump()
    # Celery would otherwise build these reprs (what Flower shows) with its generic saferepr, which
    # costs more than the rest of the publish; the reference is small, flat and already safe to show.
    celery_app.send_task(task_name(ref.type), kwargs=kwargs, task_id=ref.command_id, queue=keys.CELERY_QUEUE,
                         priority=BROKER_PRIORITY[lane], argsrepr="()", kwargsrepr=json.dumps(kwargs))
