"""Turn raw producer text into a command, or into a precise, human-readable rejection."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import ValidationError

from schemas.commands import COMMAND_ADAPTER, COMMAND_MODELS, Command
from schemas.events import FieldError
from schemas.limits import COMMAND_MAX_BYTES


@dataclass(frozen=True)
class Rejection(Exception):
    """Why a command was refused: a one-line reason plus one entry per offending field."""

    reason: str
    errors: tuple[FieldError, ...] = ()
    command_type: str | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None

    def __str__(self) -> str:
        return self.reason


def _field_errors(exc: ValidationError) -> tuple[FieldError, ...]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        # The first loc element is the union tag (e.g. "message.send"): not a field of the command.
        loc = [str(p) for p in err["loc"][1:]]
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field (not part of the command contract)"
        elif err["type"] == "missing":
            message = "required field is missing"
        out.append(FieldError(field=".".join(loc) or None, message=message))
    return tuple(out)


def _peek(raw: object, name: str) -> str | None:
    value = raw.get(name) if isinstance(raw, dict) else None
    return value if isinstance(value, str) and len(value) <= 256 else None


def parse_command(text: str | bytes) -> Command:
    """Parse and validate one command; raise :class:`Rejection` with a precise reason otherwise."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8"))
    if size > COMMAND_MAX_BYTES:
        raise Rejection(f"command is {size} bytes; the limit is {COMMAND_MAX_BYTES} bytes")
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise Rejection(f"not valid JSON{where}: {getattr(exc, 'msg', str(exc))}") from None
    ids = {k: _peek(raw, k) for k in ("idempotency_key", "correlation_id")}
    if not isinstance(raw, dict):
        raise Rejection(f"a command must be a JSON object, got {type(raw).__name__}")
    kind = raw.get("type")
    if kind not in COMMAND_MODELS:
        known = ", ".join(sorted(COMMAND_MODELS))
        shown = json.dumps(kind)[:80]
        reason = "missing field 'type'" if kind is None else f"unknown command type {shown}"
        raise Rejection(f"{reason}; expected one of: {known}", (FieldError(field="type", message=reason),), **ids)
    try:
        return COMMAND_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        errors = _field_errors(exc)
        summary = "; ".join(f"{e.field or kind}: {e.message}" for e in errors)
        raise Rejection(f"invalid {kind}: {summary}", errors, command_type=kind, **ids) from None
