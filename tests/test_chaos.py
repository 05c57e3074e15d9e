"""The chaos suite, reduced: the same harness as ``make chaos`` with small numbers, inside ``make test``.

400 REST commands (with duplicates and invalid ones), 20 guest sessions, 2 Celery kills (a pool child
mid-task and a main process), 1 guest worker kill and 1 Redis restart, against the emulator injecting
409s, 503s, 429s, latency and lost answers. Lost answers are five times as frequent as in the full run
and the customers fewer, so that a run this small still puts many sends in doubt and races them on
busy customers. The verdict comes from the emulator's ledger and the event stream; on failure the
whole report (with the seed to replay it: ``python -m chaos --seed N ...``) is the assertion message.
"""

from __future__ import annotations

import os

import pytest

from chaos.config import ChaosConfig, FaultRates
from chaos.report import render
from chaos.run import run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]  # the budget: 4 minutes on 2 cores

SEED = int(os.environ.get("PARLEY_CHAOS_SEED", "20240610"))


def test_chaos_reduced() -> None:
    config = ChaosConfig(seed=SEED, commands=400, guests=20, celery_kills=2, guest_kills=1, redis_restarts=1,
                         customers=40, rates=FaultRates(lost_answer=0.05), drain_timeout_s=120)
    result = run(config, log=False)
    report = render(result)
    print(report)
    assert not result.leftovers, report
    assert result.passed, report
