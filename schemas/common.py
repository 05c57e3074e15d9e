"""Building blocks shared by commands and events."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from schemas.limits import KEY_MAX_CHARS


class StrictModel(BaseModel):
    """Unknown fields are an error: a typo in a producer must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=True)


_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _no_control_chars(value: str) -> str:
    if _CONTROL_CHARS.search(value):  # a regex: a per-character loop was a tenth of the guest worker's CPU
        raise ValueError("must not contain control characters")
    return value


Key = Annotated[
    str,
    StringConstraints(min_length=1, max_length=KEY_MAX_CHARS),
    AfterValidator(_no_control_chars),
]
"""A producer-chosen identifier: idempotency_key, correlation_id, session_key."""

class Lane(StrEnum):
    """Which commands take the org's Genesys request budget first when it is the bottleneck: high, then
    normal, then bulk (never starved). Not chat.create's priority, which is Genesys routing."""

    high = "high"
    normal = "normal"
    bulk = "bulk"


OrgAlias = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _genesys_id(value: str) -> str:
    if not _UUID.match(value):
        raise ValueError("must be a Genesys id: a UUID such as 6f1c2a9e-3b7d-4c55-9a0e-2f4b8d1e7c30")
    return value


GenesysId = Annotated[
    str,
    AfterValidator(_genesys_id),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": _UUID.pattern}),
]
"""Genesys Cloud entity ids (conversations, queues, deployments, ...) are UUIDs."""

Address = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_no_control_chars)]

Timestamp = AwareDatetime


def random_uuid() -> str:
    """A random (version 4) UUID in its hex form, made without building a ``uuid.UUID``: event ids are
    made several times per guest message, and ``uuid.uuid4().hex`` costs six times as much."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    return raw.hex()


def random_uuid_text() -> str:
    """:func:`random_uuid` in the 8-4-4-4-12 form (tracing ids on the Web Messaging protocol)."""
    h = random_uuid()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def utf8_len(value: str) -> int:
    return len(value.encode("utf-8"))


def json_bytes(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


NonEmptyText = Annotated[str, Field(min_length=1)]
