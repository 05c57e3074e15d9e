"""`parley demo` against a real `parley run`: the five seed scenarios and every other command type."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.processes import ROOT
from tests.support.parley_run import parley_run

pytestmark = pytest.mark.integration

SCENARIOS = ("000", "001", "002", "003", "004", "oth")


def test_demo_runs_every_scenario_and_prints_what_genesys_saw(tmp_path: Path) -> None:
    with parley_run(tmp_path) as run:
        demo = subprocess.run([sys.executable, "-m", "parley.app.cli", "demo"], env=run.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stderr
    cells = [re.split(r"\s{2,}", line) for line in demo.stdout.splitlines() if line[:3] in SCENARIOS]
    rows = {f"{c[0]}|{c[1]}": "  ".join(c) for c in cells}
    assert "1 conversation.created, 2 message.sent" in rows["000 proactive message|message.send (into the live one)"]
    refused = rows["001 third-party chat|message.send into it"]  # the one that must fail, with the hint
    assert "  failed  " in refused and "no message" in refused and "chat.error.not.found" in demo.stdout
    assert "1 conversation.disconnected" in rows["002 verified end|conversation.end"]
    assert "(reused)" in rows["003 cobrowse|cobrowse.start again"]
    assert "1 cobrowse.started" in rows["003 cobrowse|cobrowse.start again"]
    assert "relayed: guest.message from the agent" in demo.stdout
    kinds = {"cobrowse.end", "guest.typing", "guest.send", "guest.end", "guest.start (web messaging)"}
    assert all(any(f"other types|{k}" == key for key in rows) for k in kinds)
    refused_key = "001 third-party chat|message.send into it"
    assert all("  succeeded" in line for key, line in rows.items() if key != refused_key)
