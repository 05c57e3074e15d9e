"""A bad or missing setting stops every entry point with one sentence naming it, exit code 2, no
traceback, and never the value itself (it may be a secret) (issue 12.4)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.processes import ROOT
from tests.support.pipeline import environ_without_parley

PARLEY = [sys.executable, "-m", "parley.app.cli"]
ENTRY_POINTS = {
    "parley status": [*PARLEY, "status"],
    "parley submit": [*PARLEY, "submit", "-"],
    "parley events": [*PARLEY, "events", "--no-follow"],
    "parley dead list": [*PARLEY, "dead", "list"],
    "parley ingest": [*PARLEY, "ingest"],
    "parley guest": [*PARLEY, "guest"],
    "parley webhook": [*PARLEY, "webhook"],
    "parley emulator": [*PARLEY, "emulator"],
    "parley flower": [*PARLEY, "flower"],
    "parley run": [*PARLEY, "run"],
    "celery worker": [sys.executable, "-m", "celery", "-A", "tasks.app", "worker"],
    "python -m emulator": [sys.executable, "-m", "emulator"],
}
SECRETISH = "s3cr3t-looking-value"


def run(argv: list[str], **settings: str) -> subprocess.CompletedProcess[str]:
    env = dict(environ_without_parley(), PYTHONPATH=str(ROOT), PARLEY_REDIS_URL="redis://127.0.0.1:9/0", **settings)
    return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, input="{}")


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_every_entry_point_says_which_setting_and_exits_2(entry: str) -> None:
    done = run(ENTRY_POINTS[entry], PARLEY_GENESYS_RATE_LIMIT_PER_MINUTE=SECRETISH)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == ("PARLEY_GENESYS_RATE_LIMIT_PER_MINUTE got text that is not a whole number; "
                                   "it must be a whole number >= 1.")
    assert "Traceback" not in done.stderr + done.stdout and SECRETISH not in done.stderr + done.stdout


@pytest.mark.parametrize(("setting", "value", "sentence"), [
    ("PARLEY_FLOWER_BASIC_AUTH", "nopassword", "PARLEY_FLOWER_BASIC_AUTH is not valid: must be user:password, "
                                               "both non-empty."),
    ("PARLEY_RETRY_BASE_S", "-1", "PARLEY_RETRY_BASE_S got a number that is too small; it must be a number > 0."),
    ("PARLEY_GUEST_BATCH_WINDOW_S", "soon", "PARLEY_GUEST_BATCH_WINDOW_S got text that is not a number; "
                                            "it must be a number >= 0 and <= 0.05."),
    ("PARLEY_EMULATOR_RATE_LIMIT_PER_MINUTE", "0", "PARLEY_EMULATOR_RATE_LIMIT_PER_MINUTE got a number that is "
                                                   "too small; it must be a whole number >= 1."),
])
def test_each_settings_family_is_explained(setting: str, value: str, sentence: str) -> None:
    argv = ENTRY_POINTS["parley emulator" if "EMULATOR" in setting else "parley guest"]
    done = run(argv, **{setting: value})
    assert done.returncode == 2 and done.stderr.strip() == sentence, done.stderr


def test_settings_that_conflict_are_explained_too() -> None:
    done = run(ENTRY_POINTS["celery worker"], PARLEY_VISIBILITY_TIMEOUT_S="20")
    assert done.returncode == 2 and done.stderr.startswith("PARLEY_VISIBILITY_TIMEOUT_S (20) must exceed")
    assert "Traceback" not in done.stderr
