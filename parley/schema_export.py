"""JSON Schema of every command and event, for producers in other languages."""

from __future__ import annotations

from typing import Any

from schemas.commands import COMMAND_ADAPTER
from schemas.events import EVENT_ADAPTER
from schemas.limits import COMMAND_MAX_BYTES


def json_schemas() -> dict[str, Any]:
    command = COMMAND_ADAPTER.json_schema()
    command["description"] = (
        f"One command per stream entry: XADD parley:commands * command <json>. At most {COMMAND_MAX_BYTES} "
        "bytes as UTF-8. Unknown fields are rejected."
    )
    return {"command": command, "event": EVENT_ADAPTER.json_schema()}
