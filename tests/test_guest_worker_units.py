"""Unit tests of the guest worker's Redis steps (routing, taking commands, fencing, relaying, adoption,
command endings) on fakeredis, and of its small pure helpers. No sockets, no emulator."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import fakeredis
import pytest
import redis.asyncio as aredis

from parley import keys
from parley.records import Records, State
from parley.settings import Settings
from schemas.events import CommandResult, GuestMessage
from schemas.validation import parse_command
from workers.guest import keys as K
from workers.guest.batch import RedisBatcher, pack_with_hiredis
from workers.guest.commands import CommandDesk
from workers.guest.keys import session_ident
from workers.guest.network import webmessaging_url
from workers.guest.ownership import LeaseLost, Ownership
from workers.guest.relay import RelayLane
from workers.guest.session import rejection_details
from workers.guest.store import RouteRequest, SessionStatus, SessionStore

pytestmark = pytest.mark.anyio

SETTINGS = Settings(redis_url="redis://fake")
GROUP = "parley-guest"
WM = "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607"
SETTINGS_INFLIGHT = keys.INFLIGHT_ZSET


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client() -> AsyncIterator[aredis.Redis]:
    server = fakeredis.FakeServer()
    async_client = fakeredis.FakeAsyncRedis(server=server, decode_responses=True)
    await async_client.xgroup_create(K.COMMANDS, GROUP, id="0", mkstream=True)
    yield async_client
    await async_client.aclose()


@pytest.fixture
async def store(client: aredis.Redis) -> SessionStore:
    batcher = RedisBatcher(client)
    store = SessionStore(batcher, SETTINGS)
    await batcher.load_scripts()
    return store


def _sync(client: aredis.Redis) -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=client.connection_pool.connection_kwargs["server"], decode_responses=True)


async def _command(client: aredis.Redis, body: dict) -> tuple[str, str]:
    """A claimed command record and its pending entry on the guest stream: (command id, entry id)."""
    raw = json.dumps({"idempotency_key": uuid.uuid4().hex, **body})
    command_id = uuid.uuid4().hex
    Records(_sync(client), SETTINGS).claim(parse_command(raw), command_id, raw, "0-1")
    entry = await client.xadd(K.COMMANDS, {"command_id": command_id, "type": body["type"],
                                           "session_key": body["session_key"]})
    await client.xreadgroup(GROUP, "router", {K.COMMANDS: ">"})
    return command_id, entry


def _request(ident: str, command_id: str, entry: str, kind: str, chosen: str = "w1") -> RouteRequest:
    return RouteRequest(ident=ident, chosen=chosen, me="router", command_id=command_id, command_type=kind,
                        group=GROUP, entry_id=entry, session_key="s1", org="default",
                        protocol="webmessaging" if kind == "guest.start" else "", ttl_s=3600)


async def _alive(client: aredis.Redis, *workers: str) -> None:
    for worker in workers:
        await client.set(K.worker(worker), "1", px=60_000)
        await client.sadd(K.WORKERS, worker)


async def test_start_creates_the_session_for_the_chosen_worker_and_acks(client: aredis.Redis,
                                                                        store: SessionStore) -> None:
    await _alive(client, "w1")
    ident = session_ident("default", "s1")
    cid, entry = await _command(client, {"type": "guest.start", "session_key": "s1", "deployment_id": WM})
    (routed,) = await store.route([_request(ident, cid, entry, "guest.start")])
    assert (routed.outcome, routed.owner) == ("routed", "w1")
    record = await store.load(ident)
    assert record is not None and record.status is SessionStatus.starting and record.owner == "w1"
    assert record.start_command_id == cid
    assert await client.sismember(K.owned("w1"), ident)
    assert (await client.xpending(K.COMMANDS, GROUP))["pending"] == 0
    assert await client.xlen(K.doorbell("w1")) == 1  # the owner is told


async def test_commands_for_no_session_or_an_ended_one_are_not_acked(client: aredis.Redis,
                                                                     store: SessionStore) -> None:
    ident = session_ident("default", "s1")
    cid, entry = await _command(client, {"type": "guest.send", "session_key": "s1", "text": "hi"})
    (routed,) = await store.route([_request(ident, cid, entry, "guest.send")])
    assert routed.outcome == "none"
    assert (await client.xpending(K.COMMANDS, GROUP))["pending"] == 1  # answered (failed) first, then acked
    await client.hset(K.session(ident), mapping={"status": "ended", "owner": "w1"})
    (routed,) = await store.route([_request(ident, cid, entry, "guest.send")])
    assert routed.outcome == "ended"


async def test_a_command_that_ended_while_it_waited_or_is_gone_is_only_acknowledged(client: aredis.Redis,
                                                                                      store: SessionStore) -> None:
    await _alive(client, "w1")
    ident = session_ident("default", "s1")
    cid, entry = await _command(client, {"type": "guest.start", "session_key": "s1", "deployment_id": WM})
    Records(_sync(client), SETTINGS).set_fields(cid, state=State.expired.value)
    gone_entry = await client.xadd(K.COMMANDS, {"command_id": "no-such-record", "type": "guest.send",
                                                "session_key": "s1"})
    await client.xreadgroup(GROUP, "router", {K.COMMANDS: ">"})
    finished, gone = await store.route([_request(ident, cid, entry, "guest.start"),
                                        _request(ident, "no-such-record", gone_entry, "guest.send")])
    assert (finished.outcome, gone.outcome) == ("finished", "gone")
    assert await store.load(ident) is None  # an expired guest.start opens no session
    assert (await client.xpending(K.COMMANDS, GROUP))["pending"] == 0


async def test_the_router_routes_hand_offs_without_reading_records_and_old_entries_from_them(
        client: aredis.Redis) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from workers.guest.handoff import HandOff
    from workers.guest.routing import Router
    from workers.guest.settings import GuestSettings

    batcher = RedisBatcher(client)
    store, desk = SessionStore(batcher, SETTINGS), CommandDesk(batcher, SETTINGS, ThreadPoolExecutor(1))
    await batcher.load_scripts()
    ownership = Ownership(client, "w1", 10_000)
    await ownership.register()
    local: list[str] = []
    router = Router(client, store, desk, ownership, GuestSettings(), local.append)
    records_read: list[list[str]] = []
    read_records = router._records

    async def counted(entries: list) -> dict:
        records_read.append([entry.fields["command_id"] for entry in entries])
        return await read_records(entries)

    router._records = counted  # type: ignore[method-assign]

    def claimed(body: dict) -> str:
        raw = json.dumps({"idempotency_key": uuid.uuid4().hex, **body})
        command_id = uuid.uuid4().hex
        Records(_sync(client), SETTINGS).claim(parse_command(raw), command_id, raw, "0-1")
        return command_id

    start_id = claimed({"type": "guest.start", "session_key": "s1", "deployment_id": WM})
    await client.xadd(K.COMMANDS, HandOff(command_id=start_id, type="guest.start", session_key="s1", org="default",
                                          protocol="webmessaging").fields())
    send_id = claimed({"type": "guest.send", "session_key": "s1", "text": "hi"})
    # As an ingestion worker from before the hand-off named the org wrote it:
    await client.xadd(K.COMMANDS, {"command_id": send_id, "type": "guest.send", "session_key": "s1"})
    assert await router.run_once(block_ms=10) == 2
    assert records_read == [[send_id]]  # only the old entry's record was read
    ident = session_ident("default", "s1")
    record = await store.load(ident)
    assert record is not None and record.protocol == "webmessaging" and record.start_command_id == start_id
    assert [f["command_id"] for _id, f in await client.xrange(K.inbox(ident))] == [start_id, send_id]
    assert local == [ident, ident]
    assert (await client.xpending(K.COMMANDS, GROUP))["pending"] == 0


def test_a_hand_off_names_the_protocol_of_a_start_only() -> None:
    from workers.guest.handoff import HandOff

    start = HandOff(command_id="c1", type="guest.start", session_key="s", org="o", protocol="guestchat")
    send = HandOff(command_id="c2", type="guest.send", session_key="s", org="o")
    assert start.fields() == {"command_id": "c1", "type": "guest.start", "session_key": "s", "org": "o",
                              "protocol": "guestchat"}
    assert send.fields() == {"command_id": "c2", "type": "guest.send", "session_key": "s", "org": "o"}
    assert HandOff.model_validate(send.fields()) == send


async def test_an_orphan_goes_to_the_chosen_worker_with_a_new_token(client: aredis.Redis,
                                                                    store: SessionStore) -> None:
    await _alive(client, "w1", "w2")
    ident = session_ident("default", "s1")
    cid, entry = await _command(client, {"type": "guest.start", "session_key": "s1", "deployment_id": WM})
    await store.route([_request(ident, cid, entry, "guest.start", chosen="w1")])
    old = await store.load(ident)
    await client.delete(K.worker("w1"))  # w1 dies
    cid2, entry2 = await _command(client, {"type": "guest.send", "session_key": "s1", "text": "hi"})
    (routed,) = await store.route([_request(ident, cid2, entry2, "guest.send", chosen="w2")])
    new = await store.load(ident)
    assert routed.owner == "w2" and old is not None and new is not None and int(new.token) > int(old.token)
    assert not await client.sismember(K.owned("w1"), ident) and await client.sismember(K.owned("w2"), ident)


async def _start_and_send_routed(client: aredis.Redis, store: SessionStore) -> tuple[str, str, str, str]:
    """A guest.start and a guest.send for session s1, routed to the live worker w1: (ident, ids, token)."""
    await _alive(client, "w1")
    ident = session_ident("default", "s1")
    start_id, entry = await _command(client, {"type": "guest.start", "session_key": "s1", "deployment_id": WM})
    send_id, entry2 = await _command(client, {"type": "guest.send", "session_key": "s1", "text": "hi"})
    await store.route([_request(ident, start_id, entry, "guest.start"), _request(ident, send_id, entry2, "guest.send")])
    token = (await store.load(ident)).token  # type: ignore[union-attr]
    return ident, start_id, send_id, token


async def test_take_finish_and_fencing(client: aredis.Redis, store: SessionStore) -> None:
    ident, start_id, send_id, token = await _start_and_send_routed(client, store)
    taken = await store.take(ident, token)
    assert (taken.outcome, taken.command_id, taken.record["command_id"]) == ("taken", start_id, start_id)
    again = await store.take(ident, token)
    assert (again.outcome, again.command_id) == ("busy", start_id)  # one command in hand at a time
    assert (await store.take(ident, "1")).outcome == "lost"  # an older owner's token
    nxt = await store.take(ident, token, finished=start_id, last_own_id="m1")
    assert (nxt.outcome, nxt.command_id) == ("taken", send_id)
    record = await store.load(ident)
    assert record is not None and record.handed and record.last_own_id == "m1"  # a send is handed as taken
    assert await store.finish(ident, token, send_id)
    assert (await store.take(ident, token)).outcome == "empty"
    assert not await store.update(ident, "1", status="live")


async def test_relay_appends_each_id_once(client: aredis.Redis, store: SessionStore) -> None:
    ident = session_ident("default", "s1")
    event = GuestMessage(session_key="s1", message_id="m1", text="hello")
    assert await store.relay(ident, [("m:m1", event), ("m:m1", event)], 3600) == 1
    assert await store.relay(ident, [("m:m1", event), ("", event)], 3600) == 1  # '' is never deduplicated
    assert await client.xlen(SETTINGS.events_stream) == 2


async def test_a_dead_workers_sessions_are_adopted_exactly_once(client: aredis.Redis) -> None:
    idents = [f"ident-{i}" for i in range(25)]
    for ident in idents:
        await client.hset(K.session(ident), mapping={"owner": "dead", "status": "live", "token": "1"})
        await client.sadd(K.owned("dead"), ident)
    await client.sadd(K.WORKERS, "dead", "a", "b")
    a, b = Ownership(client, "a", 10_000), Ownership(client, "b", 10_000)
    await a.register()
    await b.register()
    assert await a.dead_workers() == ["dead"]
    got_a, got_b = [], []
    while True:
        step_a, step_b = await a.adopt_from("dead", 4), await b.adopt_from("dead", 4)
        got_a += step_a
        got_b += step_b
        if not step_a and not step_b:
            break
    assert sorted(got_a + got_b) == sorted(idents) and not set(got_a) & set(got_b)
    assert not await client.sismember(K.WORKERS, "dead")
    assert await a.adopt_from("b", 10) == []  # a live worker's sessions are not up for adoption


async def test_one_router_and_a_lost_lease_is_noticed(client: aredis.Redis) -> None:
    a, b = Ownership(client, "a", 10_000), Ownership(client, "b", 10_000)
    await a.register()
    await b.register()
    assert await a.renew() is True and await b.renew() is False
    await a.release()
    assert await b.renew() is True
    with pytest.raises(LeaseLost):
        await a.renew()


async def test_commands_end_through_outcomes_in_one_script(client: aredis.Redis) -> None:
    from concurrent.futures import ThreadPoolExecutor

    batcher = RedisBatcher(client)
    desk = CommandDesk(batcher, SETTINGS, ThreadPoolExecutor(1))
    await batcher.load_scripts()
    cid, _entry = await _command(client, {"type": "guest.send", "session_key": "s1", "text": "hi"})
    loaded = await desk.load(cid)
    assert loaded is not None
    await desk.fail(loaded.record, "message refused: read-only", *rejection_details("webmessaging", 409, "read-only"))
    record = await desk.record(cid)
    assert record is not None and record.state is State.failed
    events = [json.loads(f["event"]) for _id, f in await client.xrange(SETTINGS.events_stream)]
    failed = next(e for e in events if e["type"] == "command.failed")
    assert failed["error"]["status"] == 409 and "read-only" in failed["hint"]
    assert await client.xlen(SETTINGS.dead_stream) == 1
    cid2, _entry = await _command(client, {"type": "guest.send", "session_key": "s1", "text": "ho"})
    loaded2 = await desk.load(cid2)
    assert loaded2 is not None
    await desk.succeed(loaded2.record, CommandResult(message_id="m2"))
    assert (await desk.record(cid2)).state is State.succeeded  # type: ignore[union-attr]


def test_rejection_details_and_socket_url() -> None:
    error, hint = rejection_details("webmessaging", 4011, "too long")
    assert error.status is None and error.code == "4011" and hint and "4096 bytes" in hint
    error, hint = rejection_details("guestchat", "chat.error.conversation.state", "not active")
    assert error.code == "chat.error.conversation.state"
    assert webmessaging_url("https://api.mypurecloud.ie", "d1") == "wss://webmessaging.mypurecloud.ie/v1?deploymentId=d1"
    assert webmessaging_url("http://127.0.0.1:8089", "d1") == "ws://127.0.0.1:8089/v1?deploymentId=d1"


def test_hiredis_packing_matches_redis_py() -> None:
    """The worker's connections pack with hiredis; the bytes on the wire are redis-py's own."""
    pool = aredis.ConnectionPool.from_url("redis://localhost:6379/0")
    pack_with_hiredis(pool)
    packing, plain = pool.connection_class(), aredis.Connection()
    commands = [("SCRIPT LOAD", "return 1"), ("EVALSHA", "ab12", 2, "k1", "k2", 1.5, 3, b"raw", "caf\u00e9"),
                (b"XADD", "s", "MAXLEN", "~", 10_000, "*", "event", "{}"), ("SET", "k", 1e20)]
    assert b"".join(packing.pack_commands(commands)) == b"".join(plain.pack_commands(commands))
    for command in commands:
        assert b"".join(packing.pack_command(*command)) == b"".join(plain.pack_command(*command))


class _LaneRedis:
    """The relay lane's two writes, recorded; each write waits until the test lets it finish."""

    def __init__(self) -> None:
        self.log: list[object] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.writing = asyncio.Event()
        self.errors: list[Exception] = []

    async def write(self, events: list[tuple[str, object]]) -> None:
        self.writing.set()
        await self.gate.wait()
        self.log.append([dedup for dedup, _event in events])

    async def checkpoint(self, checkpoint: str) -> None:
        self.log.append(f"cp:{checkpoint}")

    def lane(self) -> RelayLane:
        return RelayLane(self.write, self.checkpoint, self.errors.append)  # type: ignore[arg-type]


def _ev(n: int) -> tuple[str, GuestMessage]:
    return f"m:{n}", GuestMessage(session_key="s1", message_id=str(n), text="x")


async def test_relay_lane_keeps_order_and_batches_what_queued_behind_a_write() -> None:
    fake = _LaneRedis()
    lane = fake.lane()
    fake.gate.clear()
    lane.put([_ev(1)])
    await fake.writing.wait()  # the first write is in flight
    lane.put([_ev(2)])
    lane.checkpoint("after-2")
    lane.put([_ev(3)])  # queued after the checkpoint: the checkpoint goes with this batch, after it
    fake.gate.set()
    await lane.flush()
    assert fake.log == [["m:1"], ["m:2", "m:3"], "cp:after-2"]


async def test_relay_lane_holds_until_released_and_reports_failures() -> None:
    fake = _LaneRedis()
    lane = fake.lane()
    lane.hold()
    lane.put([_ev(1)])
    lane.put([_ev(2)])
    await asyncio.sleep(0)
    assert fake.log == []  # held: waiting for guest.started
    await lane.flush()  # releases
    assert fake.log == [["m:1", "m:2"]]

    async def broken(events: list[tuple[str, object]]) -> None:
        raise ConnectionError("redis down")

    failing = RelayLane(broken, fake.checkpoint, fake.errors.append)  # type: ignore[arg-type]
    failing.put([_ev(3)])
    with pytest.raises(ConnectionError):
        await failing.flush()
    assert isinstance(fake.errors[0], ConnectionError)
    failing.put([_ev(4)])  # a failed lane writes nothing more (the runner is going down)
    assert failing._task is None


async def test_one_script_records_the_ending_and_takes_the_next_command_running(client: aredis.Redis,
                                                                                 store: SessionStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    desk = CommandDesk(store._batcher, SETTINGS, ThreadPoolExecutor(1))
    await store._batcher.load_scripts()
    ident, start_id, send_id, token = await _start_and_send_routed(client, store)
    taken = await store.take(ident, token, begin=True)
    start = desk.parse(taken.record)
    assert start is not None and start.record.state is State.running and start.record.attempts == 1
    assert await client.zscore(SETTINGS_INFLIGHT, start_id) is not None

    # A Redis error in the ending aborts the script: nothing is taken.
    await client.set("not-a-hash", "x")
    with pytest.raises(Exception, match="WRONGTYPE"):
        await store.take(ident, token, finished=start_id, ending=[4, "HSET", "not-a-hash", "f", "v"], begin=True)
    assert (await store.load(ident)).current == start_id  # type: ignore[union-attr]

    nxt = await store.take(ident, token, finished=start_id, ending=desk.succeeded(start.record, CommandResult()),
                           begin=True, last_own_id="m0")
    assert (await desk.record(start_id)).state is State.succeeded  # type: ignore[union-attr]
    assert await client.zscore(SETTINGS_INFLIGHT, start_id) is None
    events = [json.loads(f["event"])["type"] for _id, f in await client.xrange(SETTINGS.events_stream)]
    assert events[-1] == "command.succeeded"
    assert (nxt.outcome, nxt.command_id, nxt.record["state"], nxt.record["attempts"]) == ("taken", send_id,
                                                                                         "running", "1")
    # A fenced owner's ending is still recorded (it is what happened); it takes nothing.
    send = desk.parse(nxt.record)
    assert send is not None
    lost = await store.take(ident, "1", finished=send_id, ending=desk.failed(send.record, "refused"), begin=True)
    assert lost.outcome == "lost" and (await desk.record(send_id)).state is State.failed  # type: ignore[union-attr]
    assert (await store.load(ident)).current == send_id  # type: ignore[union-attr]


def test_guest_sockets_take_the_environment_proxy_websockets_would(monkeypatch: pytest.MonkeyPatch) -> None:
    from websockets.proxy import get_proxy
    from websockets.uri import parse_uri

    from workers.guest.network import _proxy_for

    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    _proxy_for.cache_clear()
    try:
        for uri in ("wss://webmessaging.mypurecloud.ie/v1", "ws://127.0.0.1:8089/v1"):
            target = parse_uri(uri)
            assert _proxy_for(target.secure, target.host, target.port) == get_proxy(target)
        assert _proxy_for(True, "webmessaging.mypurecloud.ie", 443) == "http://proxy.example:3128"
        assert _proxy_for(False, "127.0.0.1", 8089) is None  # loopback bypasses it
    finally:
        _proxy_for.cache_clear()


async def test_a_worker_loop_that_fails_on_a_bug_is_started_again(monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    import workers.guest.worker as guest_module

    monkeypatch.setattr(guest_module, "REDIS_RETRY_S", 0.01)
    worker = guest_module.GuestWorker(SETTINGS)
    runs: list[int] = []

    async def routing() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise AttributeError("a bug")
        worker.request_stop()

    await worker._guarded(routing)
    assert runs == [0, 1]
    assert "routing failed; starting it again" in caplog.text


async def test_start_up_waits_for_redis_still_loading_its_data(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    import redis.asyncio as aredis

    import workers.guest.worker as guest_module

    monkeypatch.setattr(guest_module, "REDIS_RETRY_S", 0.01)
    worker = guest_module.GuestWorker(SETTINGS)
    answers: list[BaseException | None] = [aredis.BusyLoadingError("Redis is loading the dataset in memory"),
                                           aredis.ConnectionError("refused"), None]

    async def register() -> None:
        if (answer := answers.pop(0)) is not None:
            raise answer

    await worker._when_redis_answers(register)
    assert answers == [] and caplog.text.count("Redis not ready") == 2
