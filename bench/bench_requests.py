"""Genesys requests per command, by command type and situation, in steady state, against the minimum.

Genesys allows 300 requests per minute per OAuth client, so what a command costs in requests is what
bounds how many commands a deployment can carry. This runs the real pipeline (redis-server, the
emulator, ``parley ingest``, a ``celery -A tasks.app worker``) and, case by case, submits
``--commands`` commands of one kind, waits until every one has succeeded, and counts the requests
the emulator received meanwhile. The baseline of each case is the fewest requests the command could
possibly cost while doing what it promises (its ``minimum``, with the reason).

How requests are counted: the emulator has no request counter of its own, so the bench registers one
fault per Genesys route (and a catch-all) through ``POST /__emulator/faults`` with probability 0: a
fault never fires, but the emulator counts every call that matches it (``matched`` in
``GET /__emulator/faults``). Faults are matched in the order the emulator routes them, so each call
is counted once, under its route template. ``/oauth/token`` is counted apart (token requests are not
under the 300/min limit); in steady state there are none.

Cases, in order (each on customers / conversations the earlier cases made):

* ``message.send`` to a new customer (first contact), then again to the same customers (a live
  conversation in the state cache), and once more after their conversations were ended;
* ``cobrowse.start`` on their conversations, again while the cobrowse is live (the join code cached),
  ``cobrowse.end``, ``conversation.end``;
* ``chat.create`` (a third-party chat);
* ``message.send`` after the cache went stale: a Celery worker with ``PARLEY_STATE_MAX_AGE_S=0``, so
  every cached conversation is older than the limit and confirmed with Genesys before use.

Both rate limits (the emulator's and Parley's) are lifted, so no 429 and no retry adds requests.

    .venv/bin/python bench/bench_requests.py --commands 50
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import results  # noqa: E402
from emulator import EmulatorConfig, create_app  # noqa: E402
from emulator.fixtures import SEED  # noqa: E402
from harness.emulator_server import running_emulator  # noqa: E402
from harness.processes import parley_env, start_celery, start_ingest, stop  # noqa: E402
from parley.app.redis_server import RedisServer  # noqa: E402

DEPLOYMENT = SEED.deployments[0].id
QUEUE = SEED.queues[0].id
OAUTH = "POST /oauth/token"
OTHER = "* /api/** (no route)"

COUNTED_BY = (
    "the emulator: one probability-0 fault per Genesys route (POST /__emulator/faults), whose match count "
    "(GET /__emulator/faults) is the number of calls the route received"
)


@dataclass(frozen=True)
class Case:
    name: str
    command_type: str
    situation: str
    minimum: int
    minimum_why: str


FIRST = Case("message.send first contact", "message.send", "a new customer (no conversation)", 1,
             "POST /api/v2/conversations/messages/agentless opens the conversation and sends")
LIVE = Case("message.send live conversation", "message.send", "the customer's live conversation is cached", 1,
            "the same POST, with useExistingActiveConversation")
STALE = Case("message.send stale cache", "message.send",
             "the cached conversation is older than PARLEY_STATE_MAX_AGE_S (0 here)", 1,
             "the same POST with useExistingActiveConversation=true lands in the live conversation or opens "
             "one; its conversationId tells whether the cached one had ended")
AFTER_END = Case("message.send after conversation.end", "message.send",
                 "the customer's last conversation was ended by Parley", 1,
                 "POST agentless opens a new conversation")
COBROWSE_START = Case("cobrowse.start", "cobrowse.start", "a live message conversation, no cobrowse", 1,
                      "POST /api/v2/conversations/{id}/cobrowse")
COBROWSE_AGAIN = Case("cobrowse.start again", "cobrowse.start", "its cobrowse is live and cached (join code known)",
                      0, "the join code of the live session is already known")
COBROWSE_END = Case("cobrowse.end", "cobrowse.end", "a live cobrowse", 1,
                    "PATCH /api/v2/conversations/cobrowsesessions/{id}")
CONVERSATION_END = Case("conversation.end", "conversation.end", "a live message conversation, no agent", 2,
                        "PATCH /api/v2/conversations/messages/{id}, then one GET to read back that it took effect "
                        "(a 200 to the PATCH is no proof, seed 002); 1 without that check")
CHAT_CREATE = Case("chat.create", "chat.create", "a third-party chat on a queue", 1,
                   "POST /api/v2/conversations/chats")


class RequestCounter:
    """Counts the emulator's requests per route through probability-0 faults (see the module doc)."""

    def __init__(self, api: str) -> None:
        self.http = httpx.Client(base_url=api, timeout=10)
        self.labels: dict[str, str] = {}  # fault id -> "METHOD /path/template"
        self.http.delete("/__emulator/faults").raise_for_status()
        for method, path in self._routes():
            self._add(method, path, f"{method} {path}")
        self._add("*", "/api/**", OTHER)

    @staticmethod
    def _routes() -> list[tuple[str, str]]:
        """The emulator's Genesys routes, in the order it matches them."""
        out = []
        for route in create_app(EmulatorConfig()).routes:
            path = getattr(route, "path", "")
            if path.startswith(("/api/", "/oauth/")):
                out += [(m, path) for m in sorted(getattr(route, "methods", None) or []) if m != "HEAD"]
        return out

    def _add(self, method: str, path: str, label: str) -> None:
        reply = self.http.post("/__emulator/faults", json={
            "method": method, "path": path, "status": 500, "probability": 0.0, "seed": 0})
        reply.raise_for_status()
        self.labels[reply.json()["id"]] = label

    def snapshot(self) -> dict[str, int]:
        faults = self.http.get("/__emulator/faults").raise_for_status().json()["faults"]
        seen = {f["id"]: f for f in faults}
        missing = set(self.labels) - set(seen)
        if missing or any(f["fired"] for f in faults):
            raise SystemExit("the counting faults were changed or fired: the counts cannot be trusted")
        return {self.labels[i]: seen[i]["matched"] for i in self.labels}


class Pipeline:
    """Submits commands to parley:commands and waits for their outcome events."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        last = client.xrevrange("parley:events", count=1)
        self.cursor = last[0][0] if last else "0"

    def run(self, commands: list[dict[str, Any]], timeout_s: float = 120.0) -> tuple[list[dict[str, Any]], int]:
        """Submit, wait for each one's command.succeeded (or failed); the successes' results, in order."""
        keys_ = [c["idempotency_key"] for c in commands]
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.xadd("parley:commands", {"command": json.dumps(command)})
        pipe.execute()
        outcome: dict[str, dict[str, Any] | None] = {}
        deadline = time.monotonic() + timeout_s
        while len(outcome) < len(keys_):
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(outcome)} of {len(keys_)} commands finished in {timeout_s:.0f} s")
            for _s, rows in self.client.xread({"parley:events": self.cursor}, block=1000, count=1000) or []:
                for entry_id, fields in rows:
                    self.cursor = entry_id
                    event = json.loads(fields["event"])
                    key = event.get("idempotency_key")
                    if key not in keys_:
                        continue
                    if event["type"] == "command.succeeded":
                        outcome[key] = event.get("result") or {}
                    elif event["type"] in ("command.failed", "command.rejected", "command.expired"):
                        print(f"  {event['type']}: {event.get('reason')} {event.get('error')}", file=sys.stderr)
                        outcome[key] = None
        failed = sum(1 for v in outcome.values() if v is None)
        return [outcome[k] or {} for k in keys_], failed


def key() -> str:
    return uuid.uuid4().hex


def send(contact: str) -> dict[str, Any]:
    return {"type": "message.send", "idempotency_key": key(), "channel": "webmessaging", "from_address": DEPLOYMENT,
            "external_contact_id": contact, "text": "Your order shipped"}


def on_conversation(kind: str, conversation_id: str) -> dict[str, Any]:
    return {"type": kind, "idempotency_key": key(), "conversation_id": conversation_id}


def chat() -> dict[str, Any]:
    return {"type": "chat.create", "idempotency_key": key(), "queue_id": QUEUE, "provider": "Parley bench",
            "customer_name": "Ada"}


def measure(counter: RequestCounter, pipeline: Pipeline, case: Case,
            commands: list[dict[str, Any]]) -> tuple[results.RequestCase, list[dict[str, Any]]]:
    before = counter.snapshot()
    outcomes, failed = pipeline.run(commands)
    after = counter.snapshot()
    delta = {label: after[label] - before[label] for label in after if after[label] != before[label]}
    tokens = delta.pop(OAUTH, 0)
    total = sum(delta.values())
    record = results.RequestCase(
        case=case.name, command_type=case.command_type, situation=case.situation, commands=len(commands),
        requests=total, token_requests=tokens, per_command=round(total / len(commands), 3), minimum=case.minimum,
        minimum_why=case.minimum_why, by_route=dict(sorted(delta.items(), key=lambda kv: -kv[1])), failed=failed)
    routes = ", ".join(f"{label} x{n}" for label, n in record.by_route.items())
    print(f"{case.name:<38} {record.per_command:6.2f} per command (minimum {case.minimum})  "
          f"{total} requests / {len(commands)} commands{f', {failed} FAILED' if failed else ''}"
          f"{f', {tokens} token requests' if tokens else ''}   [{routes}]", flush=True)
    return record, outcomes


def conversation_ids(outcomes: list[dict[str, Any]]) -> list[str]:
    ids = [o.get("conversation_id") for o in outcomes]
    if not all(ids):
        raise SystemExit("a message.send reported no conversation id")
    return [str(i) for i in ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=50, help="commands per case")
    parser.add_argument("--concurrency", type=int, default=4, help="Celery worker concurrency")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (bench/results.py)")
    args = parser.parse_args()
    run = results.RunInfo.start()
    n = args.commands
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as server, \
            running_emulator({"PARLEY_EMULATOR_RATE_LIMIT_ENABLED": "false"}) as emulator:
        env = parley_env(server.url, PARLEY_GENESYS_API_URL=emulator.base_url,
                         PARLEY_GENESYS_CLIENT_ID=SEED.client_id, PARLEY_GENESYS_CLIENT_SECRET=SEED.client_secret,
                         PARLEY_GENESYS_RATE_LIMIT_PER_MINUTE="100000000")
        client = redis.Redis.from_url(server.url, decode_responses=True)
        counter = RequestCounter(emulator.base_url)
        logs = Path(tmp)
        ingest = start_ingest(env, log=logs / "ingest.log")
        worker = start_celery(env, app="tasks.app", concurrency=args.concurrency, log=logs / "celery.log")
        stale_worker = None
        cases: list[results.RequestCase] = []
        try:
            pipeline = Pipeline(client)
            pipeline.run([send(str(uuid.uuid4())) for _ in range(2 * args.concurrency)])  # warm up: token, pools
            print(f"{n} commands per case, celery concurrency {args.concurrency}; requests counted by {COUNTED_BY}")
            customers = [str(uuid.uuid4()) for _ in range(n)]

            def case(c: Case, make: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
                record, outcomes = measure(counter, pipeline, c, [make(i) for i in range(n)])
                cases.append(record)
                return outcomes

            conversations = conversation_ids(case(FIRST, lambda i: send(customers[i])))
            case(LIVE, lambda i: send(customers[i]))
            case(COBROWSE_START, lambda i: on_conversation("cobrowse.start", conversations[i]))
            case(COBROWSE_AGAIN, lambda i: on_conversation("cobrowse.start", conversations[i]))
            case(COBROWSE_END, lambda i: on_conversation("cobrowse.end", conversations[i]))
            case(CONVERSATION_END, lambda i: on_conversation("conversation.end", conversations[i]))
            case(AFTER_END, lambda i: send(customers[i]))
            case(CHAT_CREATE, lambda _i: chat())
            # Stale: the same customers (their conversations are live and cached), on a worker for which
            # every cache entry is older than the limit.
            stop(worker)
            stale_worker = start_celery({**env, "PARLEY_STATE_MAX_AGE_S": "0"}, app="tasks.app",
                                        concurrency=args.concurrency, name="stale", log=logs / "celery.log")
            case(STALE, lambda i: send(customers[i]))
        except SystemExit:
            for log in sorted(logs.glob("*.log")):  # what the workers said, since they did not finish
                print(f"--- {log.name} (last lines)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]),
                      file=sys.stderr)
            raise
        finally:
            for process in (ingest, worker, stale_worker):
                if process is not None:
                    stop(process, kill=True)
    results.write(args.json, results.RequestsResult(run=run.finish(), counted_by=COUNTED_BY,
                                                    concurrency=args.concurrency, cases=cases))


if __name__ == "__main__":
    main()
