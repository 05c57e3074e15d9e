"""Handing a command to Celery: one message per execution, carrying a reference, never the body."""

from __future__ import annotations

import json

from celery import Celery
from pydantic import BaseModel, ConfigDict, Field

from parley import keys


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


def dispatch(celery_app: Celery, ref: CommandRef) -> None:
    """Publish the task that executes ``ref``; the task id is the command id (one per command in Flower)."""
    kwargs = ref.model_dump()
    # Celery would otherwise build these reprs (what Flower shows) with its generic saferepr, which
    # costs more than the rest of the publish; the reference is small, flat and already safe to show.
    celery_app.send_task(task_name(ref.type), kwargs=kwargs, task_id=ref.command_id, queue=keys.CELERY_QUEUE,
                         argsrepr="()", kwargsrepr=json.dumps(kwargs))
