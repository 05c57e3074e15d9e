"""The README documents every setting, command type, event type and CLI command."""

import re
from pathlib import Path

from parley.app.cli import app
from parley.settings import Settings
from schemas.commands import COMMAND_MODELS, Channel, GuestProtocol
from schemas.events import EVENT_ADAPTER

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [f"PARLEY_{n.upper()}" for n in Settings.model_fields if f"`PARLEY_{n.upper()}`" not in README]
    assert not missing


def test_every_guest_worker_setting_is_documented() -> None:
    from workers.guest.settings import GuestSettings

    missing = [n for n in GuestSettings.model_fields if f"`PARLEY_GUEST_{n.upper()}`" not in README]
    assert not missing


def test_every_command_and_event_type_is_documented() -> None:
    events = EVENT_ADAPTER.json_schema()["discriminator"]["mapping"]
    missing = [t for t in [*COMMAND_MODELS, *events] if f"`{t}`" not in README]
    assert not missing


def test_every_cli_command_is_documented() -> None:
    names = [c.name or c.callback.__name__ for c in app.registered_commands]
    missing = [n for n in names if f"`parley {n}" not in README]
    assert not missing


def _rows(heading: str) -> dict[str, str]:
    """The README table under ``heading``: first cell's backticked names -> the rest of the row."""
    lines = README.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = [line for line in lines[start:][: next(i for i, x in enumerate(lines[start:]) if not x.startswith("|"))]]
    rows: dict[str, str] = {}
    for line in table[2:]:
        first, rest = line.strip("|").split("|", 1)
        for name in re.findall(r"`([^`]+)`", first):
            rows[name] = rest
    return rows


def test_command_reference_names_exactly_each_commands_fields() -> None:
    rows = _rows("### Command types")
    envelope = set(_rows("### Envelope (every command)"))
    for command_type, model in COMMAND_MODELS.items():
        documented = set(re.findall(r"`([a-z_]+)`", rows[command_type])) | envelope
        fields = set(model.model_fields)
        assert fields <= documented, f"{command_type}: undocumented {fields - documented}"
        nested = {"code", "notes", "response_id", "parameters", *(m.value for m in Channel),
                  *(p.value for p in GuestProtocol)}
        assert documented - fields <= nested, f"{command_type}: documented but no such field {documented - fields}"


def test_event_reference_names_only_fields_the_events_have() -> None:
    rows = _rows("### Events (`parley:events`, field `event`)")
    mapping = EVENT_ADAPTER.json_schema()["$defs"]
    for event_type, ref in EVENT_ADAPTER.json_schema()["discriminator"]["mapping"].items():
        fields = set(mapping[ref.rsplit("/", 1)[1]]["properties"])
        documented = set(re.findall(r"`([a-z_]+)`", rows[event_type].rsplit("|", 1)[-1]))
        result_fields = {"conversation_id", "join_code", "final_state", "reused", "status", "code", "message",
                         "contextId", "field"}
        assert documented - fields <= result_fields, f"{event_type}: no such field {documented - fields}"
