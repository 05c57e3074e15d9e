"""The README documents every setting, command type, event type and CLI command."""

from pathlib import Path

from parley.cli import app
from parley.settings import Settings
from schemas.commands import COMMAND_MODELS
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
