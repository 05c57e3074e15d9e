"""The Celery worker logs like every Parley process (:mod:`parley.logs`), hooked at two points.

* ``celeryd_init`` and ``setup_logging``: Celery leaves logging alone when a receiver answers the
  latter, so its own lines (the worker's start, "Task ... received", retries, failures) go through
  the one redaction unit as JSON, as Parley's do; no stdout redirection is installed. The former
  comes earlier, before the worker's start-up warnings.
* ``task_prerun`` / ``task_postrun``: the command a task executes is bound for the task's span, so every
  line inside it, Celery's "Task ... retry" and "... succeeded" included, carries its command id,
  idempotency key, org and type (the task's keyword arguments are the :class:`~tasks.dispatch.CommandRef`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from celery import signals

from parley import logs

_REF_FIELDS = ("command_id", "idempotency_key", "org", "type")
_spans: dict[str, AbstractContextManager[None]] = {}  # task id -> its bound span (one task at a time per process)


@signals.celeryd_init.connect  # first: the worker warns (running as root...) before it sets up logging
@signals.setup_logging.connect
def _configure(**_: Any) -> None:
    logs.configure("celery-worker")


@signals.task_prerun.connect
def _bind_command(task_id: str | None = None, kwargs: dict[str, Any] | None = None, **_: Any) -> None:
    for leftover in [_spans.pop(key) for key in list(_spans)]:  # a task whose postrun never came
        leftover.__exit__(None, None, None)
    ref = kwargs or {}
    span = logs.bound(**{name: ref.get(name) for name in _REF_FIELDS})
    span.__enter__()
    _spans[task_id or ""] = span


@signals.task_postrun.connect
def _unbind_command(task_id: str | None = None, **_: Any) -> None:
    span = _spans.pop(task_id or "", None)
    if span is not None:
        span.__exit__(None, None, None)
