"""Dead letters: commands that could not be parsed, validated or executed, kept with the reason."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.common import Timestamp, utcnow
from schemas.events import FieldError, GenesysErrorInfo


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: Timestamp = Field(default_factory=utcnow)
    stage: Literal["ingest", "execute", "webhook"]
    reason: str
    original: str = Field(description="The command exactly as the producer sent it.")
    source_entry_id: str | None = Field(default=None, description="Its id in parley:commands.")
    command_id: str | None = None
    command_type: str | None = None
    idempotency_key: str | None = None
    deliveries: int | None = None
    errors: list[FieldError] = Field(default_factory=list)
    error: GenesysErrorInfo | None = None
