"""Every log line of every process of a real `parley run`, through `parley demo` (every command type, guest
sessions of both protocols) with Genesys and webhook failures injected: JSON, about its command, and free
of the customer texts, secrets and tokens the run used."""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import redis

from harness.processes import ROOT
from parley import logs
from parley.app.redis_server import RedisServer
from schemas.commands import COMMAND_MODELS
from tests.support.parley_run import ParleyRun, parley_run

pytestmark = pytest.mark.integration

CLIENT_ID = "7c3f9a52-1e4b-4d8a-b6f2-93d0c5e8a417"  # the emulator's seeded OAuth client
CLIENT_SECRET = "Zq8vR2mW5tY1kP9sX3nB7cL0dF4hJ6gA2eU8iO5rT1w"
REDIS_PASSWORD = "redis-pw-" + secrets.token_hex(12)
FLOWER_PASSWORD = "flower-pw-" + secrets.token_hex(8)
WEBHOOK_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.")
BEARER = re.compile(r"Bearer\s+(?!<redacted>)\S{8,}")
CELERY_SHUTDOWN = re.compile(r"worker: (Warm|Cold|Soft) shutdown \(MainProcess\)")
COMPONENTS = {"run", "emulator", "ingest", "guest-worker", "celery-worker", "flower", "webhook-relay"}
FAULTS = (  # each fires once, on a call the demo makes: every one is retried by Parley
    {"method": "POST", "path": "/oauth/token", "status": 503, "times": 1},
    {"method": "POST", "path": "/api/v2/conversations/messages/agentless", "status": 503, "times": 1},
    {"method": "POST", "path": "/api/v2/conversations/chats", "status": 429, "code": "too.many.requests",
     "retry_after_s": 1, "times": 1},
)


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[bytes]]]:
    """A webhook endpoint on loopback that refuses its first delivery (500) and takes the rest."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            refused = not bodies
            bodies.append(body)
            self.send_response(500 if refused else 200)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()


def customer_texts(client: redis.Redis) -> set[str]:
    """Every text the demo's commands carried and every text the agent answered with (long enough that
    finding it in a log line cannot be chance)."""
    texts: set[str] = set()
    for _entry_id, fields in client.xrange("parley:commands"):
        texts.update(logs.customer_texts(json.loads(fields["command"])))
    for _entry_id, fields in client.xrange("parley:events"):
        event = json.loads(fields["event"])
        if event["type"] == "guest.message":
            texts.update(logs.customer_texts(event))
    return {text for text in texts if len(text) >= 8}


def access_tokens(client: redis.Redis) -> set[str]:
    """The OAuth access tokens the emulator issued (Parley caches them in Redis)."""
    tokens = set()
    for key in client.scan_iter(match="*token*"):
        if client.type(key) == "string":
            tokens.update(re.findall(r'"access_token":\s*"([^"]+)"', client.get(key) or ""))
    return tokens


def run_demo_with_faults(run: ParleyRun) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{run.emulator_port}", timeout=10) as emulator:
        deadline = time.monotonic() + 90  # a loaded machine imports slowly
        while not _answers(emulator):  # `parley run` prints its banner once its children are started
            assert time.monotonic() < deadline, "the emulator did not start"
            time.sleep(0.2)  # polling a starting server: there is no event to await
        for fault in FAULTS:
            emulator.post("/__emulator/faults", json=fault).raise_for_status()
        demo = subprocess.run([sys.executable, "-m", "parley.app.cli", "demo"], env=run.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert demo.returncode == 0, demo.stderr
        fired = [f["fired"] for f in emulator.get("/__emulator/faults").json()["faults"]]
    assert all(fired), f"a fault never fired: {fired}"


def _answers(emulator: httpx.Client) -> bool:
    try:
        return emulator.get("/__emulator/fixtures").is_success
    except httpx.TransportError:
        return False


def test_every_line_of_every_process_is_json_about_its_command_and_leaks_nothing(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", config=(f"requirepass {REDIS_PASSWORD}",),
                     auth=(None, REDIS_PASSWORD)) as redis_server, webhook_receiver() as (hook_url, deliveries):
        redis_url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_server.port}/0"
        with parley_run(tmp_path, PARLEY_REDIS_URL=redis_url, PARLEY_GENESYS_CLIENT_ID=CLIENT_ID,
                        PARLEY_GENESYS_CLIENT_SECRET=CLIENT_SECRET, PARLEY_WEBHOOK_URL=hook_url,
                        PARLEY_WEBHOOK_SECRET=WEBHOOK_SECRET, PARLEY_FLOWER_BASIC_AUTH=f"ops:{FLOWER_PASSWORD}",
                        PARLEY_GENESYS_ANALYTICS_LAG_S="2", PARLEY_LOG_LEVEL="DEBUG") as run:
            try:
                run_demo_with_faults(run)
            finally:
                (tmp_path / "parley-run.log").write_text("".join(run.output))
            client = redis_server.client(decode_responses=True)
            texts, tokens = customer_texts(client), access_tokens(client)
        assert len(deliveries) > 1  # the refused one, then the rest
    (tmp_path / "parley-run.log").write_text("".join(run.output))  # all of it, the stop included
    lines = [line.rstrip("\n") for line in run.output if line.strip()]
    assert texts and tokens and len(lines) > 200

    # Nothing secret anywhere: not the texts, not the secrets, not a token, whatever the process.
    forbidden = {*texts, *tokens, CLIENT_SECRET, REDIS_PASSWORD, FLOWER_PASSWORD, WEBHOOK_SECRET,
                 WEBHOOK_SECRET.removeprefix("whsec_")}
    for line in lines:
        leaked = [secret[:12] for secret in forbidden if secret in line or json.dumps(secret)[1:-1] in line]
        assert not leaked and not JWT.search(line) and not BEARER.search(line), f"{leaked}: {line}"

    # Every line is JSON, from a known component, but `parley run`'s banner and the notice Celery prints
    # (not logs) when SIGTERM reaches it.
    plain = [line for line in lines if not line.startswith("{")]
    assert all(line == "Parley is running." or line.startswith("  ") or CELERY_SHUTDOWN.fullmatch(line)
               for line in plain), plain
    parsed = [json.loads(line) for line in lines if line.startswith("{")]
    assert {line["component"] for line in parsed} == COMPONENTS

    # Lines about a command carry its ids; an operator follows each REST command by its id to its outcome.
    about = [line for line in parsed if "command_id" in line]
    assert all({"idempotency_key", "type", "org"} <= set(line) for line in about)
    outcomes = {(line["type"], line["msg"].split(" ")[0]) for line in about
                if line["logger"] in ("parley.runner", "parley.guest.commands")}
    assert {t for t, word in outcomes if word == "succeeded"} == set(COMMAND_MODELS)
    assert ("message.send", "failed") in outcomes  # the demo's text into a third-party chat
    retries = [line["msg"] for line in about if line["msg"].startswith("retrying")]
    assert any("Genesys 503" in msg for msg in retries) and any("Genesys 429" in msg for msg in retries)
    assert any(line["component"] == "celery-worker" and line["logger"].startswith("celery") for line in about)
    assert {line.get("session_key") for line in parsed if line["logger"].startswith("parley.guest.session")} - {None}
