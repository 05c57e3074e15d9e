"""The guest worker against the emulator over loopback: real redis-server, real websockets.

In-process tests run a :class:`workers.guest.worker.GuestWorker` on its own event loop in a thread, so the
test itself stays synchronous and waits on ``parley:events`` with XREAD BLOCK (no sleeps). The kill
tests run ``parley guest`` as real subprocesses and SIGKILL / SIGTERM them mid-conversation.
Commands are handed to the guest worker as the ingestion worker does (record claimed, then
``parley:guest:commands``), which keeps Celery out of these tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis

from harness.emulator_server import EmulatorServer, running_emulator
from harness.processes import parley_env, stop
from parley import keys
from parley.app.redis_server import RedisServer
from parley.records import Records
from parley.settings import Settings
from schemas.validation import parse_command
from tests.support.emulator_server import ROOT
from tests.support.events import await_events, read_events
from workers.guest import keys as guest_keys
from workers.guest.handoff import HandOff
from workers.guest.keys import session_ident
from workers.guest.session import SessionRunner
from workers.guest.settings import GuestSettings
from workers.guest.store import SessionStore
from workers.guest.worker import GuestWorker

pytestmark = pytest.mark.integration

WM_DEPLOYMENT = "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607"
GC_DEPLOYMENT = "9f2d7b4c-1a6e-4c38-b5d9-e08f3a2c6b71"
ORG_ID = "4a9e2c71-8b3d-4f06-a5e2-c17d90b3f6e8"
TERMINAL = {"command.succeeded", "command.failed"}
FAST = {  # small timings so adoption and reconnects happen within a test's patience
    "PARLEY_GUEST_LEASE_TTL_MS": "3000",
    "PARLEY_GUEST_RENEW_EVERY_S": "0.5",
    "PARLEY_GUEST_ADOPT_EVERY_S": "0.5",
    "PARLEY_GUEST_READ_BLOCK_MS": "200",
    "PARLEY_GUEST_BACKOFF_INITIAL_S": "0.2",
    "PARLEY_GUEST_BACKOFF_MAX_S": "1",
}


def fast_settings() -> GuestSettings:
    return GuestSettings(lease_ttl_ms=3000, renew_every_s=0.5, adopt_every_s=0.5, read_block_ms=200,
                         backoff_initial_s=0.2, backoff_max_s=1.0)


# --- harness -----------------------------------------------------------------------------------------


class Harness:
    def __init__(self, redis_url: str, emulator: EmulatorServer) -> None:
        self.redis_url = redis_url
        self.emulator = emulator
        self.settings = Settings(redis_url=redis_url, genesys_api_url=emulator.base_url)
        self.client = redis.Redis.from_url(redis_url, decode_responses=True)
        self.http = httpx.Client(base_url=emulator.base_url, timeout=10)
        self.records = Records(self.client, self.settings)

    def submit(self, command: dict[str, Any]) -> str:
        """What the ingestion worker does for a guest command: claim the record, hand it on."""
        raw = json.dumps(command)
        parsed = parse_command(raw)
        command_id = uuid.uuid4().hex
        self.records.claim(parsed, command_id, raw, f"0-{time.time_ns()}")
        self.client.xadd(keys.GUEST_COMMANDS_STREAM, HandOff.of(command_id, parsed).fields())  # type: ignore[arg-type]
        return command_id

    def outcome(self, key: str, timeout_s: float = 30.0) -> dict[str, Any]:
        events = await_events(self.client, lambda ev: any(
            e.get("idempotency_key") == key and e["type"] in TERMINAL for e in ev), timeout_s)
        return next(e for e in events if e.get("idempotency_key") == key and e["type"] in TERMINAL)

    def run(self, command: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
        self.submit(command)
        return self.outcome(command["idempotency_key"], timeout_s)

    def wait(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 30.0) -> list[dict[str, Any]]:
        return await_events(self.client, predicate, timeout_s)

    def session_events(self, session_key: str, kind: str) -> list[dict[str, Any]]:
        return [e for e in read_events(self.client) if e.get("session_key") == session_key and e["type"] == kind]

    def ledger(self, kind: str) -> list[dict[str, Any]]:
        return self.http.get("/__emulator/ledger", params={"kind": kind}).json()["entries"]

    def admin(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.http.post(f"/__emulator/{path}", json=body or {})
        response.raise_for_status()
        return response.json() if response.content else {}

    def close(self) -> None:
        self.client.close()
        self.http.close()


ORIGIN = "https://parley.example.com"  # in the web messaging deployment's allowed domains


def start(session_key: str, protocol: str = "webmessaging", **extra: Any) -> dict[str, Any]:
    command: dict[str, Any] = {"type": "guest.start", "idempotency_key": f"start-{uuid.uuid4().hex[:8]}",
                               "session_key": session_key}
    if protocol == "guestchat":
        command.update(protocol="guestchat", deployment_id=GC_DEPLOYMENT, organization_id=ORG_ID,
                       queue_name="Support", display_name="Ada")
    else:
        command.update(deployment_id=WM_DEPLOYMENT)
    return command | extra


def send(session_key: str, text: str) -> dict[str, Any]:
    return {"type": "guest.send", "idempotency_key": f"send-{uuid.uuid4().hex[:8]}", "session_key": session_key,
            "text": text}


def simple(kind: str, session_key: str) -> dict[str, Any]:
    return {"type": kind, "idempotency_key": f"{kind}-{uuid.uuid4().hex[:8]}", "session_key": session_key}


def messages(events: list[dict[str, Any]], session_key: str) -> list[str]:
    return [e["text"] for e in events if e["type"] == "guest.message" and e.get("session_key") == session_key]


def has_message(session_key: str, text: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda ev: text in messages(ev, session_key)


_CRASHED: list[WorkerThread] = []


class WorkerThread:
    """A GuestWorker on its own event loop in a thread (the test stays synchronous)."""

    def __init__(self, settings: Settings, guest_settings: GuestSettings) -> None:
        self.worker = GuestWorker(settings, guest_settings)
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> WorkerThread:
        self._thread.start()
        assert self._ready.wait(20), "guest worker did not start"
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self.worker.request_stop)
        self._thread.join(30)
        assert not self._thread.is_alive(), "guest worker did not stop"

    def crash(self) -> None:
        """Stop dead, as SIGKILL would: no handover, no lease release, nothing written on the way out.
        The stopped loop is kept for the rest of the run: finalizing its coroutines would run the
        cleanup code (``finally`` blocks) that a killed process never runs."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        _CRASHED.append(self)

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the worker's event loop."""
        self._loop.call_soon_threadsafe(callback)

    def _main(self) -> None:
        with contextlib.suppress(RuntimeError):  # "Event loop stopped before Future completed" on crash()
            self._loop.run_until_complete(self.worker.run(ready=self._ready.set))


@pytest.fixture(scope="module")
def emulator_server() -> Iterator[EmulatorServer]:
    with running_emulator() as server:
        yield server


@pytest.fixture
def harness(redis_url: str, emulator_server: EmulatorServer) -> Iterator[Harness]:
    h = Harness(redis_url, emulator_server)
    h.http.post("/__emulator/reset").raise_for_status()
    h.http.delete("/__emulator/faults")
    yield h
    h.close()


@pytest.fixture
def worker(harness: Harness) -> Iterator[WorkerThread]:
    thread = WorkerThread(harness.settings, fast_settings()).start()
    yield thread
    thread.stop()


@contextmanager
def guest_process(harness: Harness, **settings: str) -> Iterator[subprocess.Popen[bytes]]:
    """A ``parley guest`` process with the FAST timings, or ``settings`` (environment variables) instead."""
    env = parley_env(harness.redis_url, PARLEY_GENESYS_API_URL=harness.emulator.base_url, **{**FAST, **settings})
    process = subprocess.Popen([sys.executable, "-m", "parley.app.cli", "guest"], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield process
    finally:
        stop(process, kill=True)


# --- full conversations --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["webmessaging", "guestchat"])
def test_full_conversation_ended_by_guest(harness: Harness, worker: WorkerThread, protocol: str) -> None:
    sk = f"cust-{uuid.uuid4().hex[:8]}"
    started = harness.run(start(sk, protocol, first_message="Hi, my order is late"))
    assert started["type"] == "command.succeeded", started
    if protocol == "guestchat":
        assert started["result"]["conversation_id"]
    harness.wait(has_message(sk, "You said: Hi, my order is late"))
    assert harness.session_events(sk, "guest.started")[0]["resumed"] is False
    assert len(harness.session_events(sk, "guest.agent_joined")) == 1
    assert "Hello, my name is Emma Agent. How can I help you?" in messages(read_events(harness.client), sk)

    sent = harness.run(send(sk, "Order 42, please"))
    assert sent["type"] == "command.succeeded" and sent["result"]["message_id"]
    typing = harness.run(simple("guest.typing", sk))
    assert typing["type"] == "command.succeeded"
    harness.wait(has_message(sk, "You said: Order 42, please"))
    assert harness.session_events(sk, "guest.typing"), "the agent's typing indicator is relayed"

    ended = harness.run(simple("guest.end", sk))
    assert ended["type"] == "command.succeeded" and ended["result"]["final_state"] == "ended"
    assert [e["by"] for e in harness.session_events(sk, "guest.ended")] == ["guest"]
    late = harness.run(send(sk, "anyone there?"))
    assert late["type"] == "command.failed" and "ended" in late["reason"]
    assert len(harness.ledger("guest.message.received")) == 2
    received = Counter(messages(read_events(harness.client), sk))
    assert all(n == 1 for n in received.values()), received
    # Relays have a lane of their own, held until the start is recorded, and the end comes last.
    kinds = [e["type"] for e in read_events(harness.client) if e.get("session_key") == sk]
    assert kinds.index("guest.started") < min(kinds.index("guest.agent_joined"), kinds.index("guest.message"))
    assert [k for k in kinds if k.startswith("guest.")][-1] == "guest.ended"


def test_agent_answer_is_relayed_while_the_commands_ending_is_still_in_redis(
        harness: Harness, worker: WorkerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guest's echo and the agent's answer come back to back; recording the send's ending (a Redis
    round trip) must not hold the answer up. The ending is held at a gate here until the answer is in
    ``parley:events``: a runner that waited for it would never relay the answer."""
    sk = f"cust-{uuid.uuid4().hex[:8]}"
    assert harness.run(start(sk))["type"] == "command.succeeded"
    gate, gated = asyncio.Event(), threading.Event()
    held: list[str] = []
    take = SessionStore.take

    async def gated_take(self: SessionStore, ident: str, token: str, *, finished: str = "", **kw: Any) -> Any:
        if finished and finished in held:
            gated.set()
            await gate.wait()
        return await take(self, ident, token, finished=finished, **kw)

    monkeypatch.setattr(SessionStore, "take", gated_take)
    command = send(sk, "Where is my parcel?")
    held.append(harness.submit(command))
    try:
        harness.wait(has_message(sk, "You said: Where is my parcel?"), timeout_s=15)
        assert gated.is_set(), "the send's ending went through the gate"
        assert not [e for e in read_events(harness.client)
                    if e.get("idempotency_key") == command["idempotency_key"] and e["type"] in TERMINAL]
    finally:
        worker.call_soon(gate.set)
    assert harness.outcome(command["idempotency_key"])["type"] == "command.succeeded"


def test_a_session_takes_its_first_command_before_it_connects(harness: Harness, worker: WorkerThread,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Later commands are taken off the input path, the first one is not: a guest.start must hold the
    relay lane before any agent event, and an adopter must know of a maybe-sent message before the
    resumed session's history backfill arrives (else it waits for a backfill that already came)."""
    order: list[str] = []
    take, connect = SessionStore.take, SessionRunner._connect

    async def recorded_take(self: SessionStore, ident: str, token: str, **kw: Any) -> Any:
        taken = await take(self, ident, token, **kw)
        order.append(f"taken {taken.type}")
        return taken

    async def recorded_connect(self: SessionRunner, gen: int, uri: str, origin: str | None) -> None:
        order.append("connect")
        await connect(self, gen, uri, origin)

    monkeypatch.setattr(SessionStore, "take", recorded_take)
    monkeypatch.setattr(SessionRunner, "_connect", recorded_connect)
    assert harness.run(start(f"cust-{uuid.uuid4().hex[:8]}"))["type"] == "command.succeeded"
    assert order.index("taken guest.start") < order.index("connect"), order


@pytest.mark.parametrize("protocol", ["webmessaging", "guestchat"])
def test_conversation_ended_by_agent(harness: Harness, worker: WorkerThread, protocol: str) -> None:
    sk = f"cust-{uuid.uuid4().hex[:8]}"
    assert harness.run(start(sk, protocol, first_message="hello"))["type"] == "command.succeeded"
    assert harness.run(send(sk, "bye"))["type"] == "command.succeeded"
    events = harness.wait(lambda ev: any(e["type"] == "guest.ended" and e.get("session_key") == sk for e in ev))
    assert [e["by"] for e in events if e["type"] == "guest.ended" and e.get("session_key") == sk] == ["agent"]
    harness.wait(has_message(sk, "Goodbye!"))
    after = harness.run(send(sk, "wait, one more thing"))
    assert after["type"] == "command.failed", after
    ended = harness.run(simple("guest.end", sk))
    assert ended["type"] == "command.succeeded" and ended["result"]["already_ended"] is True


def test_duplicate_start_attaches_to_the_live_session(harness: Harness, worker: WorkerThread) -> None:
    sk = f"cust-{uuid.uuid4().hex[:8]}"
    first = harness.run(start(sk, "guestchat"))
    second = harness.run(start(sk, "guestchat"))
    assert first["type"] == second["type"] == "command.succeeded"
    assert second["result"]["reused"] is True
    assert second["result"]["conversation_id"] == first["result"]["conversation_id"]
    assert [e["resumed"] for e in harness.session_events(sk, "guest.started")] == [False, True]
    assert len(harness.ledger("guest.session.created")) == 1


def test_commands_for_unknown_session_fail_with_a_reason(harness: Harness, worker: WorkerThread) -> None:
    failed = harness.run(send("nobody", "hello?"))
    assert failed["type"] == "command.failed" and "guest.start" in failed["reason"]
    dead = harness.client.xrange("parley:dead")
    assert any(json.loads(f["dead"])["command_id"] for _id, f in dead)


# --- faults ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["webmessaging", "guestchat"])
def test_socket_dropped_mid_conversation_loses_and_doubles_nothing(
    harness: Harness, worker: WorkerThread, protocol: str
) -> None:
    sk = f"cust-{uuid.uuid4().hex[:8]}"
    assert harness.run(start(sk, protocol, first_message="first"))["type"] == "command.succeeded"
    harness.wait(has_message(sk, "You said: first"))
    # The agent answers at once, and the worker reconnects after 0.1-0.2 s: an answer to a message
    # confirmed just before a drop may be written while the socket is down, and then only the history
    # backfill after the reconnect brings it (the next test makes that case certain).
    harness.http.patch("/__emulator/config", json={"agent_reply_delay_s": 0}).raise_for_status()
    texts = [f"message {i}" for i in range(8)]
    for i, text in enumerate(texts):
        if i not in (2, 5):
            harness.submit(send(sk, text))
            continue
        assert harness.run(send(sk, text))["type"] == "command.succeeded"
        assert harness.admin("sockets/drop", {"protocol": protocol, "abrupt": i == 2})["sockets"] >= 1
        harness.wait(has_message(sk, f"You said: {text}"))  # reconnected and backfilled before the next drop
    events = harness.wait(lambda ev: all(f"You said: {t}" in messages(ev, sk) for t in texts), timeout_s=60)
    received = Counter(messages(events, sk))
    assert all(n == 1 for n in received.values()), f"relayed twice: {received}"
    succeeded = [e for e in events if e["type"] == "command.succeeded" and e.get("command_type") == "guest.send"]
    assert len(succeeded) == len(texts)
    assert len(harness.ledger("guest.message.received")) == len(texts) + 1, "a guest message was sent twice"


def test_agent_message_sent_while_the_socket_is_down_comes_from_history_once(
    harness: Harness, worker: WorkerThread
) -> None:
    """The agent speaks between a drop and the reconnect (the worker waits at least 0.1 s to reconnect):
    no socket carries it, so only the history backfill after the reconnect can relay it."""
    sk = f"cust-{uuid.uuid4().hex[:8]}"
    assert harness.run(start(sk, first_message="first"))["type"] == "command.succeeded"
    harness.wait(has_message(sk, "You said: first"))
    [session] = harness.http.get("/__emulator/webmessaging/sessions").json()["sessions"]
    assert harness.admin("sockets/drop", {"session_id": session["session_id"], "abrupt": True})["sockets"] == 1
    harness.admin(f"conversations/{session['conversation_id']}/agent/messages", {"text": "said while you were away"})
    events = harness.wait(has_message(sk, "said while you were away"), timeout_s=30)
    assert messages(events, sk).count("said while you were away") == 1
    assert harness.run(send(sk, "still here"))["type"] == "command.succeeded"  # the session lives on


@pytest.mark.parametrize("protocol", ["webmessaging", "guestchat"])
def test_sessions_carry_on_after_redis_restarts(harness: Harness, worker: WorkerThread, redis_server: RedisServer,
                                                protocol: str) -> None:
    """Redis goes away and comes back from its AOF: the worker's connections break (its multiplexed
    one included), runners that were mid-call start again, and the session goes on: nothing lost,
    nothing relayed twice."""
    sk = f"cust-{uuid.uuid4().hex[:8]}"
    assert harness.run(start(sk, protocol, first_message="before the restart"))["type"] == "command.succeeded"
    harness.wait(has_message(sk, "You said: before the restart"))
    redis_server.restart()
    for text in ("after the restart", "and once more"):
        assert harness.run(send(sk, text), timeout_s=60)["type"] == "command.succeeded"
        harness.wait(has_message(sk, f"You said: {text}"))
    received = Counter(messages(read_events(harness.client), sk))
    assert all(n == 1 for n in received.values()), received
    assert len(harness.ledger("guest.message.received")) == 3


def test_reordered_and_duplicated_frames_are_relayed_once_in_order(harness: Harness, worker: WorkerThread) -> None:
    sk = f"cust-{uuid.uuid4().hex[:8]}"
    assert harness.run(start(sk, first_message="hello"))["type"] == "command.succeeded"
    harness.wait(has_message(sk, "You said: hello"))
    harness.admin("sockets/shape", {"protocol": "webmessaging", "mode": "duplicate", "frames": 10})
    for text in ("one", "two"):
        assert harness.run(send(sk, text))["type"] == "command.succeeded"
    harness.admin("sockets/shape", {"protocol": "webmessaging", "mode": "reorder", "frames": 4, "hold_ms": 300})
    for text in ("three", "four"):
        assert harness.run(send(sk, text))["type"] == "command.succeeded"
    events = harness.wait(lambda ev: all(f"You said: {t}" in messages(ev, sk) for t in ("one", "two", "three",
                                                                                         "four")))
    received = messages(events, sk)
    assert all(n == 1 for n in Counter(received).values()), received


def test_webmessaging_rate_limit_holds_and_resends(harness: Harness) -> None:
    sk = f"cust-{uuid.uuid4().hex[:8]}"
    # Unpaced (the worker's own pacing would keep it under the limit): what a 429 does when one comes.
    worker = WorkerThread(harness.settings, fast_settings().model_copy(update={"messages_per_second": 0})).start()
    try:
        assert harness.run(start(sk))["type"] == "command.succeeded"
        burst = [send(sk, f"burst {i}") for i in range(12)]  # Genesys allows 5 messages per second per session
        for command in burst:
            harness.submit(command)
        outcomes = [harness.outcome(c["idempotency_key"], timeout_s=60) for c in burst]
    finally:
        worker.stop()
    assert all(o["type"] == "command.succeeded" for o in outcomes), outcomes
    retrying = [e for e in read_events(harness.client) if e["type"] == "command.retrying"]
    assert retrying and "429" in retrying[0]["reason"]
    assert len(harness.ledger("guest.message.received")) == len(burst)


def test_guestchat_rest_429_is_retried(harness: Harness, worker: WorkerThread) -> None:
    sk = f"cust-{uuid.uuid4().hex[:8]}"
    assert harness.run(start(sk, "guestchat"))["type"] == "command.succeeded"
    harness.http.post("/__emulator/faults", json={
        "method": "POST", "path": "/api/v2/webchat/guest/conversations/*/members/*/messages",
        "status": 429, "retry_after_s": 1, "times": 2}).raise_for_status()
    sent = harness.run(send(sk, "are you there"))
    assert sent["type"] == "command.succeeded", sent
    assert [e for e in read_events(harness.client) if e["type"] == "command.retrying"]
    harness.wait(has_message(sk, "You said: are you there"))


def test_read_only_session_ends_by_agent_and_refuses_sends(harness: Harness, worker: WorkerThread) -> None:
    sk = f"cust-{uuid.uuid4().hex[:8]}"
    assert harness.run(start(sk, first_message="hello"))["type"] == "command.succeeded"
    harness.wait(has_message(sk, "You said: hello"))
    (session,) = harness.http.get("/__emulator/webmessaging/sessions").json()["sessions"]
    harness.admin(f"webmessaging/sessions/{session['session_id']}/read-only")
    harness.wait(lambda ev: any(e["type"] == "guest.ended" and e.get("session_key") == sk for e in ev))
    assert [e["by"] for e in harness.session_events(sk, "guest.ended")] == ["agent"]
    refused = harness.run(send(sk, "still there?"))
    assert refused["type"] == "command.failed" and "ended" in refused["reason"]


# --- workers dying -----------------------------------------------------------------------------------------


def test_sigkilled_worker_sessions_are_adopted_and_continue(harness: Harness) -> None:
    keys_by_protocol = {p: f"cust-{p}-{uuid.uuid4().hex[:6]}" for p in ("webmessaging", "guestchat")}
    with guest_process(harness) as first:
        for protocol, sk in keys_by_protocol.items():
            assert harness.run(start(sk, protocol, first_message="before"))["type"] == "command.succeeded"
            harness.wait(has_message(sk, "You said: before"))
        with guest_process(harness) as second:
            harness.wait(lambda ev: len(list(harness.client.scan_iter("parley:heartbeat:guest:*"))) >= 2,
                         timeout_s=20)
            # The agent answers while nobody holds the sockets: the adopter must backfill it.
            for sk in keys_by_protocol.values():
                harness.submit(send(sk, "during"))
            first.send_signal(signal.SIGKILL)
            first.wait()
            killed_at = time.monotonic()
            for sk in keys_by_protocol.values():
                assert harness.outcome(f"{_last_key(harness, sk)}", timeout_s=30)["type"] == "command.succeeded"
                harness.wait(has_message(sk, "You said: during"), timeout_s=30)
            assert time.monotonic() - killed_at < 15 + 5, "adoption took too long"
            for sk in keys_by_protocol.values():
                assert harness.run(send(sk, "after"))["type"] == "command.succeeded"
                harness.wait(has_message(sk, "You said: after"))
            assert second.poll() is None
    for sk in keys_by_protocol.values():
        received = Counter(messages(read_events(harness.client), sk))
        assert all(n == 1 for n in received.values()), received
    assert len(harness.ledger("guest.session.created")) == 2, "adoption must resume, not create"
    assert len(harness.ledger("guest.message.received")) == 6, "each guest message reaches Genesys once"


def test_sigterm_hands_sessions_over_at_once(harness: Harness) -> None:
    sk = f"cust-{uuid.uuid4().hex[:8]}"
    # Leases that outlive the test's patience: the session can only reach the second worker in time if the
    # first one released it, never by its lease running out (no stopwatch, so no margin for a busy machine).
    outlives_the_test = {"PARLEY_GUEST_LEASE_TTL_MS": "120000"}
    with guest_process(harness, **outlives_the_test) as first:
        assert harness.run(start(sk, first_message="hello"))["type"] == "command.succeeded"
        with guest_process(harness, **outlives_the_test) as second:
            harness.wait(lambda ev: len(list(harness.client.scan_iter("parley:heartbeat:guest:*"))) >= 2,
                         timeout_s=20)
            first.send_signal(signal.SIGTERM)
            assert first.wait(20) == 0
            sent = harness.run(send(sk, "still here"), timeout_s=30)  # well within the 120 s lease
            assert sent["type"] == "command.succeeded", "a released session must be adopted without waiting for the TTL"
            harness.wait(has_message(sk, "You said: still here"))
            assert second.poll() is None
    received = Counter(messages(read_events(harness.client), sk))
    assert all(n == 1 for n in received.values()), received


def _last_key(harness: Harness, session_key: str) -> str:
    """The idempotency key of the latest guest.send accepted for ``session_key``."""
    for _id, fields in reversed(harness.client.xrange(keys.GUEST_COMMANDS_STREAM)):
        if fields["session_key"] == session_key and fields["type"] == "guest.send":
            record = harness.records.get(fields["command_id"])
            assert record is not None
            return record.idempotency_key
    raise AssertionError("no guest.send found")


# --- a message in flight when its owner died ---------------------------------------------------------------


def leave_a_handed_send(harness: Harness, session_key: str, text: str) -> dict[str, Any]:
    """What an owner that died mid-send leaves: the guest.send taken from the session's inbox and marked
    handed (it may be on Genesys), no outcome yet. The command, as submitted."""
    command = send(session_key, text)
    raw = json.dumps(command)
    command_id = uuid.uuid4().hex
    harness.records.claim(parse_command(raw), command_id, raw, "0-1")
    ident = session_ident("default", session_key)
    inbox_id = harness.client.xadd(guest_keys.inbox(ident), {"command_id": command_id, "type": "guest.send"})
    harness.client.hset(guest_keys.session(ident), mapping={"cursor": inbox_id, "current": command_id,
                                                       "current_type": "guest.send", "handed": "1",
                                                       "taken_at": str(time.time())})
    return command


@pytest.mark.parametrize("delivered", [True, False])
def test_adopter_sends_a_handed_message_only_if_history_lacks_it(harness: Harness, delivered: bool) -> None:
    """The owner put ``guest.send`` on the wire (or was about to) and died before the echo: the adopter
    looks in history first, so the message reaches Genesys exactly once either way."""
    from websockets.sync.client import connect

    sk = f"cust-{uuid.uuid4().hex[:8]}"
    # Genesys checks Origin on the socket and on the history GET the adopter makes.
    harness.http.patch("/__emulator/config", json={"webmessaging_require_origin": True}).raise_for_status()
    first = WorkerThread(harness.settings, fast_settings()).start()
    assert harness.run(start(sk, first_message="hello", origin=ORIGIN))["type"] == "command.succeeded"
    harness.wait(has_message(sk, "You said: hello"))
    first.crash()

    # What the dead owner left: the send taken from the inbox and marked handed, no outcome yet.
    command = leave_a_handed_send(harness, sk, "sent before the crash")
    ident = session_ident("default", sk)
    if delivered:  # it did reach Genesys: send it on the session's own token, as the dead owner did
        token = json.loads(harness.client.get(guest_keys.secret(ident)))["token"]
        url = harness.emulator.base_url.replace("http://", "ws://") + f"/v1?deploymentId={WM_DEPLOYMENT}"
        with connect(url, origin=ORIGIN) as ws:
            ws.send(json.dumps({"action": "configureSession", "token": token, "deploymentId": WM_DEPLOYMENT,
                                "tracingId": "t-configure"}))
            ws.recv(timeout=10)
            ws.send(json.dumps({"action": "onMessage", "token": token, "tracingId": "t-message",
                                "message": {"type": "Text", "text": command["text"]}}))
            while json.loads(ws.recv(timeout=10)).get("tracingId") != "t-message":
                pass

    second = WorkerThread(harness.settings, fast_settings()).start()
    try:
        outcome = harness.outcome(command["idempotency_key"], timeout_s=30)
        assert outcome["type"] == "command.succeeded" and outcome["result"]["message_id"]
        harness.wait(has_message(sk, "You said: sent before the crash"))
        assert harness.run(send(sk, "and after"))["type"] == "command.succeeded"
    finally:
        second.stop()
    assert len(harness.ledger("guest.message.received")) == 3, "the handed message must reach Genesys once"


def test_guestchat_adopter_retries_a_failed_backfill_before_sending_a_handed_message(harness: Harness) -> None:
    """Chaos finding (a Guest Chat message reached Genesys twice): the adopter's history backfill got a
    503; the machine asks again after a backoff, but the runner took the gap between the failed page and
    its retry for the backfill's end, concluded the message was absent and sent it again."""
    sk = f"cust-{uuid.uuid4().hex[:8]}"
    first = WorkerThread(harness.settings, fast_settings()).start()
    assert harness.run(start(sk, "guestchat", first_message="hello"))["type"] == "command.succeeded"
    harness.wait(has_message(sk, "You said: hello"))
    first.crash()

    # What the dead owner left: the send taken from the inbox, marked handed, and on Genesys already.
    command = leave_a_handed_send(harness, sk, "sent before the crash")
    ident = session_ident("default", sk)
    created = json.loads(json.loads(harness.client.get(guest_keys.secret(ident)))["created"])
    harness.http.post(f"/api/v2/webchat/guest/conversations/{created['id']}/members/{created['member']['id']}"
                      "/messages", json={"body": command["text"], "bodyType": "standard"},
                      headers={"Authorization": f"Bearer {created['jwt']}"}).raise_for_status()
    harness.http.post("/__emulator/faults", json={
        "method": "GET", "path": "/api/v2/webchat/guest/conversations/{id}/messages", "status": 503,
        "times": 1}).raise_for_status()

    second = WorkerThread(harness.settings, fast_settings()).start()
    try:
        outcome = harness.outcome(command["idempotency_key"], timeout_s=30)
        assert outcome["type"] == "command.succeeded" and outcome["result"]["message_id"]
        assert harness.run(send(sk, "and after"))["type"] == "command.succeeded"
        harness.wait(has_message(sk, "You said: and after"))
    finally:
        second.stop()
    assert len(harness.ledger("guest.message.received")) == 3, "the handed message must reach Genesys once"


# --- the Messenger configuration's conversation settings (issue 13.2) ------------------------------------------
DEFAULTS_DEPLOYMENT = "7a1d4e92-5c3b-4f08-9e6a-2b8d1f5c7e30"  # Genesys' defaults: Disconnect off, Clear off
READ_ONLY_DEPLOYMENT = "c4e8b1f7-2d6a-4a93-8b5e-9f0c3d7a1e62"  # Disconnect on as ReadOnly, Clear off


def test_under_genesys_defaults_guest_end_closes_the_session_clear_being_refused(
        harness: Harness, worker: WorkerThread) -> None:
    sk = f"cust-{uuid.uuid4().hex[:8]}"
    assert harness.run(start(sk, first_message="hello", deployment_id=DEFAULTS_DEPLOYMENT))["type"] == \
        "command.succeeded"
    harness.wait(has_message(sk, "You said: hello"))
    ended = harness.run(simple("guest.end", sk))
    assert ended["type"] == "command.succeeded", ended
    assert [e["by"] for e in harness.session_events(sk, "guest.ended")] == ["guest"]
    [session] = [s for s in harness.http.get("/__emulator/webmessaging/sessions").json()["sessions"]
                 if s["deployment_id"] == DEFAULTS_DEPLOYMENT]
    assert session["cleared"] is False and session["connections"] == 0  # closed, since Clear was refused


def test_under_genesys_defaults_an_untold_agent_end_ends_the_session_once_idle(harness: Harness) -> None:
    sk = f"cust-{uuid.uuid4().hex[:8]}"
    idle = WorkerThread(harness.settings, fast_settings().model_copy(update={"idle_end_s": 2.0})).start()
    try:
        assert harness.run(start(sk, first_message="hello", deployment_id=DEFAULTS_DEPLOYMENT))["type"] == \
            "command.succeeded"
        assert harness.run(send(sk, "bye"))["type"] == "command.succeeded"  # the emulator's agent ends on "bye"
        harness.wait(has_message(sk, "Goodbye!"))
        harness.wait(lambda ev: any(e["type"] == "guest.ended" and e.get("session_key") == sk for e in ev))
    finally:
        idle.stop()
    [ended] = harness.session_events(sk, "guest.ended")
    assert ended["by"] == "system" and "PARLEY_GUEST_IDLE_END_S" in ended["reason"]
    assert len(harness.ledger("conversation.disconnected")) == 1  # the agent's: the session was closed, not cleared


def test_a_told_agent_end_is_reported_on_a_read_only_deployment(harness: Harness, worker: WorkerThread) -> None:
    sk = f"cust-{uuid.uuid4().hex[:8]}"
    assert harness.run(start(sk, first_message="hello", deployment_id=READ_ONLY_DEPLOYMENT))["type"] == \
        "command.succeeded"
    assert harness.run(send(sk, "bye"))["type"] == "command.succeeded"
    harness.wait(lambda ev: any(e["type"] == "guest.ended" and e.get("session_key") == sk for e in ev))
    assert [e["by"] for e in harness.session_events(sk, "guest.ended")] == ["agent"]


def test_the_router_trims_routed_entries_from_the_guest_commands_stream(harness: Harness, worker: WorkerThread) -> None:
    sk = f"cust-{uuid.uuid4().hex[:8]}"
    assert harness.run(start(sk, first_message="hello"))["type"] == "command.succeeded"
    assert harness.client.xlen(guest_keys.COMMANDS) >= 1
    trimmed = asyncio.run_coroutine_threadsafe(worker.worker.router.trim(keep_s=0), worker._loop).result(10)
    assert trimmed >= 1 and harness.client.xlen(guest_keys.COMMANDS) == 0
    assert harness.run(send(sk, "still routed"))["type"] == "command.succeeded"
