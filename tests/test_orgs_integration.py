"""Two Genesys orgs end to end: real redis-server, `parley ingest`, a Celery worker, a guest worker
(`parley guest`), and two emulators on loopback, one per org (the default seeded org, and the
``second`` one, configured as ``northwind`` through PARLEY_ORGS with its secret in a file).

Each emulator only accepts its own org's OAuth client, so a command's effect in an org's ledger
proves it went with that org's credentials; the ledgers' ``token.issued`` entries name the client.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from emulator.fixtures import SECOND, SEED
from harness.emulator_server import EmulatorServer, running_emulator
from harness.processes import start_celery, start_ingest
from parley.app.redis_server import RedisServer
from parley.deadletters import DeadLetters
from parley.settings import Settings
from tests.support.emulator_server import ROOT
from tests.support.events import await_events, read_events
from tests.support.pipeline import Pipeline, key, pipeline_env

pytestmark = pytest.mark.integration

NORTHWIND = "northwind"
GUEST_TIMINGS = {"PARLEY_GUEST_READ_BLOCK_MS": "200", "PARLEY_GUEST_BACKOFF_INITIAL_S": "0.2",
                 "PARLEY_GUEST_BACKOFF_MAX_S": "1"}


class Org:
    """One org as the test sees it: its emulator's admin surface and seeded fixtures."""

    def __init__(self, alias: str, emulator: EmulatorServer) -> None:
        self.alias = alias
        self.http = httpx.Client(base_url=emulator.base_url, timeout=10)
        self.fixtures = emulator.fixtures()

    def ledger(self, kind: str) -> list[dict[str, Any]]:
        return self.http.get("/__emulator/ledger", params={"kind": kind}).json()["entries"]

    def send(self, contact: str, **extra: Any) -> dict[str, Any]:
        deployment = next(d.id for d in self.fixtures.deployments if d.type == "webmessaging")
        return {"type": "message.send", "idempotency_key": key("send"), "org": self.alias, "channel": "webmessaging",
                "from_address": deployment, "external_contact_id": contact, "text": "Your order has shipped",
                **extra}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, Org, Org]]:
    tmp = Path(tmp_path_factory.mktemp("orgs"))
    with ExitStack() as stack:
        server = stack.enter_context(RedisServer(tmp / "redis"))
        default_emulator = stack.enter_context(running_emulator())
        second_emulator = stack.enter_context(running_emulator({"PARLEY_EMULATOR_ORG": "second"}))
        secret = tmp / "northwind_secret"  # as a Docker secret would be mounted
        secret.write_text(SECOND.client_secret + "\n")
        orgs = {NORTHWIND: {"api_url": second_emulator.base_url, "client_id": SECOND.client_id,
                            "client_secret_file": str(secret), "rate_limit_per_minute": 300}}
        env = pipeline_env(server.url, default_emulator, PARLEY_ORGS=json.dumps(orgs), **GUEST_TIMINGS)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        http = stack.enter_context(httpx.Client(base_url=default_emulator.base_url))
        log_dir = tmp / "logs"
        log_dir.mkdir()
        pipeline = Pipeline(server, default_emulator, env, client, http, log_dir)
        stack.callback(pipeline.stop_all)
        pipeline.start("ingest", start_ingest(env, log=log_dir / "ingest.log"))
        pipeline.start("celery", start_celery(env, app="tasks.app", concurrency=2, log=log_dir / "celery.log"))
        guest_log = (log_dir / "guest.log").open("ab")
        stack.callback(guest_log.close)
        pipeline.start("guest", subprocess.Popen([sys.executable, "-m", "parley.app.cli", "guest"], env=env, cwd=ROOT,
                                                 stdout=guest_log, stderr=guest_log))
        yield pipeline, Org("default", default_emulator), Org(NORTHWIND, second_emulator)


def test_the_emulators_serve_two_orgs_with_nothing_in_common(world: tuple[Pipeline, Org, Org]) -> None:
    _, default, northwind = world
    assert default.fixtures == SEED and northwind.fixtures == SECOND
    assert default.fixtures.client_id != northwind.fixtures.client_id
    assert not {d.id for d in SEED.deployments} & {d.id for d in SECOND.deployments}


def test_each_org_is_called_with_its_own_credentials_and_the_same_customer_is_two_conversations(
        world: tuple[Pipeline, Org, Org]) -> None:
    pipeline, default, northwind = world
    customer = str(uuid.uuid4())  # the same external contact id in both orgs
    first = {org.alias: pipeline.run(org.send(customer)) for org in (default, northwind)}
    again = {org.alias: pipeline.run(org.send(customer)) for org in (default, northwind)}
    assert all(e["type"] == "command.succeeded" for e in [*first.values(), *again.values()]), first | again
    conversations = {alias: e["result"]["conversation_id"] for alias, e in first.items()}
    assert conversations["default"] != conversations[NORTHWIND]
    # Each org's second send finds its own org's conversation, not the other org's (state cache per org).
    assert {alias: e["result"]["conversation_id"] for alias, e in again.items()} == conversations
    for org in (default, northwind):
        created = [e["conversation_id"] for e in org.ledger("conversation.created")
                   if e.get("external_contact_id") == customer]
        assert created == [conversations[org.alias]]
        assert len([e for e in org.ledger("message.sent") if e["conversation_id"] == conversations[org.alias]]) == 2
        assert {e["client_id"] for e in org.ledger("token.issued")} == {org.fixtures.client_id}
        # Every event about the org's commands carries the org.
        keys = {e["idempotency_key"] for e in (first[org.alias], again[org.alias])}
        events = [e for e in read_events(pipeline.client) if e.get("idempotency_key") in keys]
        assert events and {e["org"] for e in events} == {org.alias}


def test_a_cobrowse_on_the_second_org_goes_to_that_org(world: tuple[Pipeline, Org, Org]) -> None:
    pipeline, default, northwind = world
    sent = pipeline.run(northwind.send(str(uuid.uuid4())))
    conversation = sent["result"]["conversation_id"]
    started = pipeline.run({"type": "cobrowse.start", "idempotency_key": key("cb"), "org": NORTHWIND,
                            "conversation_id": conversation})
    assert started["type"] == "command.succeeded", started
    assert [e["conversation_id"] for e in northwind.ledger("cobrowse.started")] == [conversation]
    # The default org does not know the conversation: the same command there fails, nothing happens.
    elsewhere = pipeline.run({"type": "cobrowse.start", "idempotency_key": key("cb"), "conversation_id": conversation})
    assert elsewhere["type"] == "command.failed"
    assert default.ledger("cobrowse.started") == []


def test_a_guest_session_of_the_second_org_runs_against_that_org(world: tuple[Pipeline, Org, Org]) -> None:
    pipeline, default, northwind = world
    session_key = key("guest")
    deployment = next(d.id for d in SECOND.deployments if d.type == "webmessaging")
    started = pipeline.run({"type": "guest.start", "idempotency_key": key("start"), "org": NORTHWIND,
                            "session_key": session_key, "deployment_id": deployment,
                            "first_message": "Where is my parcel?"})
    assert started["type"] == "command.succeeded", started
    greeting = f"Hello, my name is {SECOND.agents[0].name}. How can I help you?"
    events = await_events(pipeline.client, lambda ev: any(
        e["type"] == "guest.message" and e.get("session_key") == session_key and e.get("text") == greeting
        for e in ev), timeout_s=30)
    assert {e["org"] for e in events if e.get("session_key") == session_key} == {NORTHWIND}
    assert len(northwind.ledger("guest.message.received")) == 1
    assert default.ledger("guest.message.received") == []


def test_a_command_for_an_unknown_org_is_rejected_and_dead_lettered(world: tuple[Pipeline, Org, Org]) -> None:
    pipeline, default, _ = world
    command = dict(default.send(str(uuid.uuid4())), org="apac")
    entry_id = pipeline.submit(command)
    events = await_events(pipeline.client, lambda ev: any(
        e["type"] == "command.rejected" and e.get("source_entry_id") == entry_id for e in ev), timeout_s=30)
    [rejected] = [e for e in events if e.get("source_entry_id") == entry_id]
    assert rejected["reason"] == f"unknown org 'apac'; known orgs: default, {NORTHWIND}"
    settings = Settings(redis_url=pipeline.redis_server.url)
    [dead] = [d for d in DeadLetters(pipeline.client, settings).list() if d.letter.source_entry_id == entry_id]
    assert dead.entry_id == rejected["dead_letter_id"] and json.loads(dead.letter.original) == command
    assert not any(e.get("idempotency_key") == command["idempotency_key"] and e["type"] != "command.rejected"
                   for e in read_events(pipeline.client))
