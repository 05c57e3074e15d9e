"""``python -m chaos`` (``make chaos``): one seeded chaos run; exit status 1 when any check fails."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType

from chaos.config import ChaosConfig, FaultRates
from chaos.report import render
from chaos.run import run


def parse(argv: list[str] | None = None) -> ChaosConfig:
    defaults = ChaosConfig(seed=0)
    p = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    p.add_argument("--seed", type=int, default=None, help="replay a run (default: a fresh random seed, printed)")
    p.add_argument("--commands", type=int, default=defaults.commands, help="distinct valid REST commands")
    p.add_argument("--guests", type=int, default=defaults.guests, help="guest sessions (both protocols)")
    p.add_argument("--celery-kills", type=int, default=defaults.celery_kills)
    p.add_argument("--guest-kills", type=int, default=defaults.guest_kills)
    p.add_argument("--redis-restarts", type=int, default=defaults.redis_restarts)
    p.add_argument("--concurrency", type=int, default=defaults.celery_concurrency, help="per Celery worker")
    p.add_argument("--window", type=int, default=defaults.window, help="REST commands in flight at most")
    p.add_argument("--recovery-limit", type=float, default=defaults.recovery_limit_s, help="seconds")
    p.add_argument("--drain-timeout", type=float, default=defaults.drain_timeout_s, help="seconds")
    p.add_argument("--customers", type=int, default=0, help="message.send customers (default: commands / 25)")
    p.add_argument("--lost-answers", type=float, default=defaults.rates.lost_answer,
                   help="share of mutating Genesys calls whose answer is lost after they took effect")
    p.add_argument("--non-utf8", action="store_true",
                   help="also submit a command whose bytes are not UTF-8 (last of all: it stops ingestion today)")
    p.add_argument("--keep-dir", action="store_true", help="keep the working directory (logs, AOF)")
    a = p.parse_args(argv)
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "big")
    return ChaosConfig(seed=seed, commands=a.commands, guests=a.guests, celery_kills=a.celery_kills,
                       guest_kills=a.guest_kills, redis_restarts=a.redis_restarts, celery_concurrency=a.concurrency,
                       window=a.window, recovery_limit_s=a.recovery_limit, drain_timeout_s=a.drain_timeout,
                       customers=a.customers, non_utf8=a.non_utf8, rates=FaultRates(lost_answer=a.lost_answers),
                       keep_dir=a.keep_dir)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    print(f"chaos: signal {signum}; stopping every process and removing the working directory", file=sys.stderr)
    raise SystemExit(128 + signum)  # unwinds through run()'s clean-up


def main(argv: list[str] | None = None) -> int:
    config = parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    print(f"chaos seed: {config.seed}", flush=True)
    result = run(config)
    print(render(result), flush=True)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
