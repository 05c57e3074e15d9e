"""What the ingestion worker appends to ``parley:guest:commands`` for each guest command: everything
routing needs (:mod:`workers.guest.routing`), so the router reads no command record. The body stays
in the record, read once, by the session that takes the command."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from schemas.commands import Command, GuestStart


class HandOff(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    command_id: str
    type: str
    session_key: str
    org: str | None = None
    """None: written by an ingestion worker older than this field; the router then reads the record."""
    protocol: str = ""
    """A guest.start's protocol ('' for every other command)."""

    @classmethod
    def of(cls, command_id: str, command: Command) -> HandOff:
        """The hand-off of an accepted guest command (a command with a ``session_key`` target)."""
        return cls(command_id=command_id, type=command.type, session_key=command.targets["session_key"],
                   org=command.org, protocol=command.protocol.value if isinstance(command, GuestStart) else "")

    def fields(self) -> dict[str, str]:
        """The stream entry's fields."""
        return {k: v for k, v in self.model_dump().items() if v}
