"""The Python producer helper: validate a command, then XADD it exactly as any producer would."""

from __future__ import annotations

import json
from typing import Any

import redis

from parley import tracing
from parley.settings import Settings
from schemas.commands import Command
from schemas.validation import parse_command


class Producer:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._client = client
        self.stream = settings.commands_stream

    def submit(self, command: Command | dict[str, Any] | str) -> str:
        """Validate and enqueue one command; return its stream entry id.

        Raises :class:`schemas.validation.Rejection` (with the reason) for an invalid command, so a
        Python producer learns at once what a non-Python one learns from ``command.rejected``.
        """
        if isinstance(command, str):
            text = command
        elif isinstance(command, dict):
            text = json.dumps(command)
        else:
            text = command.model_dump_json(exclude_none=True)
        parse_command(text)
        return self.submit_raw(text)

    def submit_raw(self, text: str) -> str:
        """Enqueue text without validating it (what a careless producer does; for tests and replays)."""
        with tracing.publishing(self.stream) as traced:
            fields = {"command": text}
            if traced.traceparent:  # tracing on: ingest's span continues this trace (parley.tracing)
                fields[tracing.TRACEPARENT] = traced.traceparent
            return str(self._client.xadd(self.stream, fields))
