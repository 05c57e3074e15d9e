"""bench/bench_sizing.py keeps measuring what the README's sizing table says: its Redis footprint
measurement on a real redis-server (fast), and the whole script on a tiny run (integration)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import redis

from bench import bench_sizing, results
from bench.bench_sizing import KeyInfo, footprint, pattern, snapshot
from parley.app.redis_server import RedisServer
from parley.records import Records
from parley.settings import Settings
from schemas.validation import parse_command


def test_ids_in_key_names_become_placeholders() -> None:
    assert pattern("parley:cmd:0f3a9c1e2b4d5f6a7b8c9d0e1f2a3b4c") == "parley:cmd:{id}"
    assert pattern("parley:idem:default:message.send:6f1c2a9e-3b7d-4c55-9a0e-2f4b8d1e7c30") == \
        "parley:idem:default:message.send:{id}"
    assert pattern("parley:events") == "parley:events"
    assert pattern("parley:guest:owned:vm-12-ab") == "parley:guest:owned:vm-12-ab"  # a worker's name stays


def test_footprint_counts_new_grown_shrunk_and_gone_keys() -> None:
    before = {"s": KeyInfo("stream", 1000, -1), "old:1234567890123456": KeyInfo("string", 100, 50),
              "same": KeyInfo("string", 80, -1)}
    after = {"s": KeyInfo("stream", 1600, -1), "new:abcdefabcdefabcdef": KeyInfo("hash", 300, 3600),
             "same": KeyInfo("string", 80, -1)}
    groups = {g.pattern: g for g in footprint(before, after)}
    assert groups["s"].bytes == 600 and groups["s"].new_keys == 0
    assert (groups["new:{id}"].new_keys, groups["new:{id}"].bytes, groups["new:{id}"].ttl_s) == (1, 300, 3600)
    assert (groups["old:{id}"].gone_keys, groups["old:{id}"].bytes) == (1, -100)
    assert "same" not in groups


def test_a_claimed_command_leaves_its_record_key_and_event_with_the_retention_as_ttl(tmp_path: Path) -> None:
    """The measurement on a real redis-server: ingest's own claim script, n commands, what they leave."""
    n = 20
    with RedisServer(tmp_path) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        settings = Settings(redis_url=server.url)
        records = Records(client, settings)
        before = snapshot(client)
        for _ in range(n):
            raw = json.dumps({"type": "cobrowse.start", "idempotency_key": uuid.uuid4().hex,
                              "conversation_id": str(uuid.uuid4())})
            records.claim(parse_command(raw), uuid.uuid4().hex, raw, "0-1")
        groups = {g.pattern: g for g in footprint(before, snapshot(client))}
        client.close()
    record, idem, events = (groups["parley:cmd:{id}"], groups["parley:idem:default:cobrowse.start:{id}"],
                            groups["parley:events"])
    assert (record.new_keys, idem.new_keys) == (n, n)
    assert 0 < record.ttl_s <= settings.idempotency_retention_s and 0 < idem.ttl_s <= settings.idempotency_retention_s
    assert record.bytes / n > 200 and idem.bytes / n > 50  # a hash with the command in it; a short string
    assert events.type == "stream" and events.bytes > 0 and events.ttl_s == -1  # bounded by MAXLEN, not a TTL


@pytest.mark.integration
def test_the_script_measures_every_case_through_the_real_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "sizing.json"
    result = bench_sizing.main(["--commands", "2", "--sessions", "1", "--concurrency", "2", "--json", str(out)])
    assert results.read(out) == result  # the typed record bench/report.py renders
    cases = {c.name: c for c in result.cases}
    assert set(cases) == {"message.send, first contact", "message.send, live conversation cached", "cobrowse.start",
                          "cobrowse.end", "conversation.end", "chat.create", "guest.start (web messaging)",
                          "guest.send + the agent's reply relayed", "guest.send again (a later exchange)",
                          "guest.end"}
    for name, case in cases.items():
        patterns = {k.pattern for k in case.keys}
        assert "parley:cmd:{id}" in patterns, name  # every command leaves its record
        assert case.key_bytes_per_unit > 0, name
    assert "parley:state:live:{id}" in {k.pattern for k in cases["message.send, first contact"].keys}
    guest_keys = {k.pattern for k in cases["guest.start (web messaging)"].keys}
    assert {"parley:guest:session:{id}", "parley:guest:inbox:{id}", "parley:guest:secret:{id}"} <= guest_keys
