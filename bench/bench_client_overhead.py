"""GenesysClient overhead per call against a bare httpx call, same emulator route, same run.

Both sides call ``GET /api/v2/conversations/{id}`` on a real emulator process over loopback, in
alternation (call by call, median of per-call latencies, so load from anything else on the machine
hits both sides alike). The bare side is ``httpx.Client.get`` with a fixed bearer token and a status
check. The client side adds everything a task pays for: the shared token (in-process memo), a
rate-limit slot (one Lua call on a real redis-server; the limit is set high enough never to
wait), request building, logging, and parsing into the typed ``Conversation``. The emulator's own
per-token limit is lifted for the run. The two main costs are also timed alone, to explain the gap.

    .venv/bin/python bench/bench_client_overhead.py --calls 500 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import results
from emulator.fixtures import SEED
from genesys.client import GenesysClient
from genesys.effects import SyncRunner
from genesys.models import Conversation
from genesys.ratelimit import RateLimiter
from harness.emulator_server import EmulatorServer, running_emulator
from parley.app.redis_server import RedisServer
from parley.settings import Settings

UNLIMITED = 100_000_000  # per minute: the slot is taken (its cost measured) but never waited for


def per_call_us(call: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1e6


def bench(emulator: EmulatorServer, redis_url: str, calls: int, rounds: int,
          run: results.RunInfo) -> results.ClientOverheadResult:
    with httpx.Client(base_url=emulator.base_url) as admin:
        admin.patch("/__emulator/config", json={"rate_limit_enabled": False}).raise_for_status()
    settings = Settings(
        genesys_api_url=emulator.base_url,
        genesys_client_id=SEED.client_id,
        genesys_client_secret=SecretStr(SEED.client_secret),
        genesys_rate_limit_per_minute=UNLIMITED,
    )
    client = GenesysClient(settings, redis.Redis.from_url(redis_url))
    sent = client.send_agentless(
        from_address=SEED.deployments[0].id,
        messenger_type="webmessaging",
        external_contact_id=SEED.external_contacts[0].id,
        text="benchmark",
    )
    conversation_id = sent.conversation_id or ""
    path = f"/api/v2/conversations/{conversation_id}"

    bare = httpx.Client(base_url=emulator.base_url)
    grant = bare.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(SEED.client_id, SEED.client_secret)
    )
    bare.headers["Authorization"] = f"Bearer {grant.raise_for_status().json()['access_token']}"

    def bare_call() -> None:
        bare.get(path).raise_for_status()

    def client_call() -> None:
        client.get_conversation(conversation_id)

    for warm in (bare_call, client_call):
        per_call_us(warm, 50)
    bare_us: list[float] = []
    client_us: list[float] = []
    for _ in range(rounds):
        round_bare, round_client = [], []
        for _ in range(calls):
            round_bare.append(per_call_us(bare_call, 1))
            round_client.append(per_call_us(client_call, 1))
        bare_us.append(statistics.median(round_bare))
        client_us.append(statistics.median(round_client))

    body = bare.get(path).content
    parse_us = per_call_us(lambda: Conversation.model_validate_json(body), calls)
    limiter = RateLimiter("bench:overhead:rate", "bench:overhead:pause", UNLIMITED)
    runner = SyncRunner(redis.Redis.from_url(redis_url))
    slot_us = per_call_us(lambda: runner.run(limiter.plan_acquire()), calls)
    bare.close()
    client.close()

    b, c = statistics.median(bare_us), statistics.median(client_us)  # median of the rounds' medians
    print(f"{rounds} rounds x {calls} calls each side, GET /api/v2/conversations/{{id}}, emulator over loopback")
    print(f"bare httpx      {b:8.0f} us/call   rounds {[round(x) for x in bare_us]}")
    print(f"GenesysClient   {c:8.0f} us/call   rounds {[round(x) for x in client_us]}")
    print(f"overhead        {c - b:8.0f} us/call")
    print(f"  timed alone:  rate-limit slot {slot_us:.0f} us (Redis round trip), typed parse {parse_us:.0f} us")
    print(f"ratio client/bare: {c / b:.2f}")
    return results.ClientOverheadResult(
        run=run.finish(), calls_per_round=calls, rounds=rounds, bare_us=[round(x, 1) for x in bare_us],
        client_us=[round(x, 1) for x in client_us], bare_median_us=round(b, 1), client_median_us=round(c, 1),
        overhead_us=round(c - b, 1), rate_limit_slot_us=round(slot_us, 1), typed_parse_us=round(parse_us, 1),
        ratio=round(c / b, 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500, help="calls per side per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (bench/results.py)")
    args = parser.parse_args()
    run = results.RunInfo.start()
    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisServer(Path(tmp), appendonly=False) as server,
        running_emulator() as emulator,
    ):
        record = bench(emulator, server.url, args.calls, args.rounds, run)
    results.write(args.json, record)


if __name__ == "__main__":
    main()
