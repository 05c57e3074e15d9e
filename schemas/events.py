"""The events Parley appends to ``parley:events``: what producers and operators see happen.

Every event has an ``id`` (unique; events are delivered at least once, so consumers may dedupe on
it), a ``type`` and ``at``; events about a command carry its ``idempotency_key``,
``correlation_id``, ``command_type`` and ``command_id``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.common import Timestamp, random_uuid, utcnow


class EventBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str = Field(default_factory=random_uuid)
    at: Timestamp = Field(default_factory=utcnow)


class CommandEventBase(EventBase):
    idempotency_key: str | None = None
    correlation_id: str | None = None
    command_type: str | None = None
    command_id: str | None = Field(default=None, description="Parley's id of the command (its stream entry id).")
    org: str | None = None


class GenesysErrorInfo(BaseModel):
    """The Genesys ErrorBody fields that explain a failure (Genesys' own field names)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    status: int | None = None
    code: str | None = None
    message: str | None = None
    context_id: str | None = Field(default=None, alias="contextId")
    message_params: dict[str, str] | None = Field(default=None, alias="messageParams")


class CommandAccepted(CommandEventBase):
    type: Literal["command.accepted"] = "command.accepted"


class CommandDuplicate(CommandEventBase):
    """The idempotency key was seen before: nothing new is executed."""

    type: Literal["command.duplicate"] = "command.duplicate"
    original_command_id: str
    original_state: str


class CommandResult(BaseModel):
    """What a command produced; only the fields that apply to its type are set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    conversation_id: str | None = None
    communication_id: str | None = None
    message_id: str | None = None
    participant_states: dict[str, str] | None = None
    final_state: str | None = None
    already_ended: bool | None = None
    cobrowse_session_id: str | None = None
    join_code: str | None = None
    websocket_url: str | None = None
    date_offer_ends: str | None = None
    reused: bool | None = Field(default=None, description="An existing live conversation/cobrowse was used.")
    routing_only: bool | None = None
    note: str | None = None


class CommandSucceeded(CommandEventBase):
    type: Literal["command.succeeded"] = "command.succeeded"
    result: CommandResult = Field(default_factory=CommandResult)


class CommandRetrying(CommandEventBase):
    type: Literal["command.retrying"] = "command.retrying"
    attempt: int
    delay_s: float
    reason: str
    error: GenesysErrorInfo | None = None


class CommandFailed(CommandEventBase):
    type: Literal["command.failed"] = "command.failed"
    reason: str
    attempts: int = 0
    error: GenesysErrorInfo | None = None
    hint: str | None = Field(default=None, description="What the Genesys error means and what to do.")


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str | None = Field(description="Dotted path of the offending field; null for the whole command.")
    message: str


class CommandRejected(CommandEventBase):
    """The command could not be parsed or validated; the original is in the dead-letter stream."""

    type: Literal["command.rejected"] = "command.rejected"
    reason: str
    errors: list[FieldError] = Field(default_factory=list)
    source_entry_id: str | None = Field(
        default=None, description="The entry's id in parley:commands: what the producer's XADD returned.")
    dead_letter_id: str | None = Field(default=None, description="The original's id in parley:dead (last field).")


class CommandExpired(CommandEventBase):
    type: Literal["command.expired"] = "command.expired"
    expires_at: Timestamp


class GuestEventBase(CommandEventBase):
    session_key: str


class GuestStarted(GuestEventBase):
    type: Literal["guest.started"] = "guest.started"
    protocol: str
    conversation_id: str | None = None
    resumed: bool = False


class GuestAgentJoined(GuestEventBase):
    type: Literal["guest.agent_joined"] = "guest.agent_joined"
    agent_name: str | None = None


class GuestMessage(GuestEventBase):
    """Agent or bot text to the customer."""

    type: Literal["guest.message"] = "guest.message"
    message_id: str
    text: str
    sender: Literal["agent", "bot", "system"] = "agent"
    sent_at: Timestamp | None = None


class GuestTypingEvent(GuestEventBase):
    type: Literal["guest.typing"] = "guest.typing"


class GuestEnded(GuestEventBase):
    type: Literal["guest.ended"] = "guest.ended"
    by: Literal["guest", "agent", "system"]
    reason: str | None = None


Event = Annotated[
    CommandAccepted
    | CommandDuplicate
    | CommandSucceeded
    | CommandRetrying
    | CommandFailed
    | CommandRejected
    | CommandExpired
    | GuestStarted
    | GuestAgentJoined
    | GuestMessage
    | GuestTypingEvent
    | GuestEnded,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
