"""One command's trace end to end, across processes: the producer's publish span (this process, the SDK's
in-memory exporter), ingest's process span (`parley ingest`), the Celery task's process span (a prefork
`celery worker` child) and its Genesys call spans (the emulator on loopback) form one trace, each the
child of the one before, linked only by the ``traceparent`` in the stream entry and the command record;
the spans of the other processes are read back from ``PARLEY_OTEL_SPANS_FILE``."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.pipeline import key, running_pipeline

pytestmark = pytest.mark.integration

DEPLOYMENT = "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607"
TEXT = "Ada, your parcel 7731 ships today"




def spans_of_trace(path: Path, trace_id: str, until: Any, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """The spans of ``trace_id`` written to ``path`` so far, once ``until(spans)`` holds (polled)."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        spans = [s for s in map(json.loads, lines) if s["context"]["trace_id"] == trace_id]
        if until(spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.1)


def test_one_command_is_one_trace_from_the_producer_to_each_genesys_call(
        tmp_path: Path, spans: InMemorySpanExporter) -> None:
    spans_file = tmp_path / "spans.jsonl"
    customer = str(uuid.uuid4())
    with running_pipeline(tmp_path, celery_concurrency=1, PARLEY_OTEL_ENABLED="true",
                          PARLEY_OTEL_SPANS_FILE=str(spans_file)) as pipeline:
        command = {"type": "message.send", "idempotency_key": key("trace"), "channel": "webmessaging",
                   "from_address": DEPLOYMENT, "external_contact_id": customer, "text": TEXT}
        done = pipeline.run(command)
        assert done["type"] == "command.succeeded", done
        (publish,) = spans.get_finished_spans()
        trace_id = f"0x{publish.context.trace_id:032x}"
        spans = spans_of_trace(spans_file, trace_id, lambda found: any(
            s["name"] == "process parley.commands" for s in found))

    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    (ingest,) = by_name["process parley:commands"]
    (task,) = by_name["process parley.commands"]
    calls = [s for s in spans if s["kind"] == "SpanKind.CLIENT"]
    assert ingest["parent_id"] == f"0x{publish.context.span_id:016x}" and ingest["kind"] == "SpanKind.CONSUMER"
    assert task["parent_id"] == ingest["context"]["span_id"] and task["kind"] == "SpanKind.CONSUMER"
    assert calls and all(c["parent_id"] == task["context"]["span_id"] for c in calls)
    assert {c["name"] for c in calls} >= {"POST /api/v2/conversations/messages/agentless"}, calls
    assert all(c["attributes"]["http.response.status_code"] < 400 for c in calls)
    command_id = done["command_id"]
    assert ingest["attributes"]["messaging.message.id"] == task["attributes"]["messaging.message.id"] == command_id
    assert task["attributes"]["messaging.destination.name"] == "parley.commands"
    assert task["attributes"]["parley.command.type"] == "message.send"
    # Never customer text, nor the customer's id, in any span of any process.
    written = spans_file.read_text()
    assert TEXT not in written and "7731" not in written and customer not in written and DEPLOYMENT not in written


def test_a_guest_send_is_one_trace_from_the_producer_to_its_socket_frame(
        tmp_path: Path, spans: InMemorySpanExporter) -> None:
    spans_file = tmp_path / "spans.jsonl"
    session_key = key("session")
    text = "Ada here: my parcel 7731 never came"
    with running_pipeline(tmp_path, celery_concurrency=1, guest_workers=1, PARLEY_OTEL_ENABLED="true",
                          PARLEY_OTEL_SPANS_FILE=str(spans_file)) as pipeline:
        started = pipeline.run({"type": "guest.start", "idempotency_key": key("start"), "session_key": session_key,
                                "deployment_id": DEPLOYMENT})
        assert started["type"] == "command.succeeded", started
        spans.clear()
        sent = pipeline.run({"type": "guest.send", "idempotency_key": key("send"), "session_key": session_key,
                             "text": text})
        assert sent["type"] == "command.succeeded", sent
        (publish,) = spans.get_finished_spans()
        spans = spans_of_trace(spans_file, f"0x{publish.context.trace_id:032x}", lambda found: any(
            s["name"] == "send websocket" for s in found))

    (ingest,) = [s for s in spans if s["name"] == "process parley:commands"]
    frames = [s for s in spans if s["name"] == "send websocket"]
    assert ingest["parent_id"] == f"0x{publish.context.span_id:016x}"
    assert ingest["attributes"]["messaging.message.id"] == sent["command_id"]
    assert frames and all(f["parent_id"] == ingest["context"]["span_id"] and f["kind"] == "SpanKind.PRODUCER"
                          for f in frames)
    assert frames[0]["attributes"] == {"network.protocol.name": "websocket"}
    written = spans_file.read_text()
    assert text not in written and "7731" not in written and session_key not in written
