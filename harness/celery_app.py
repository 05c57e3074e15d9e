"""A Celery worker app for ingestion tests: Parley's real tasks with a recording handler.

The handler stands in for Genesys (whose handlers are tested against the emulator elsewhere): it
counts executions per command in Redis, so tests can prove "N commands in, N executions".
"""

from __future__ import annotations

import os

import tasks.commands  # noqa: F401 - registers Parley's handlers first, so ours replace them below
from schemas.commands import REST_COMMAND_TYPES, Command
from schemas.events import CommandResult
from tasks.app import app  # noqa: F401 - the worker loads this module's `app`
from tasks.context import HANDLERS, ExecutionContext

EXECUTIONS = "test:executions"


def record_execution(ctx: ExecutionContext, command: Command) -> CommandResult:
    delay = float(os.environ.get("TEST_HANDLER_DELAY_S", "0"))
    if delay:
        import time

        time.sleep(delay)  # simulates a slow Genesys call so a kill lands mid-command
    ctx.redis.hincrby(EXECUTIONS, f"{command.org}:{command.type}:{command.idempotency_key}", 1)
    return CommandResult(note=f"recorded attempt {ctx.attempt}")


for _type in REST_COMMAND_TYPES:
    HANDLERS[_type] = record_execution
