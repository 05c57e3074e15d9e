"""compose.yaml validates against the Compose specification (../shared/contracts/compose-spec.json)."""

import json
from pathlib import Path

import jsonschema
import yaml

from tests.support.contract import CONTRACTS_DIR

ROOT = Path(__file__).resolve().parents[1]


def test_compose_file_validates_against_the_spec() -> None:
    spec = json.loads((CONTRACTS_DIR / "compose-spec.json").read_text())
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    jsonschema.validate(compose, spec)
    assert {"redis", "emulator", "ingest", "celery-worker", "flower"} <= set(compose["services"])
    assert "--appendonly" in compose["services"]["redis"]["command"]
