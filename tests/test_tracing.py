"""parley/tracing.py: W3C trace context carried through the stream entry and the command record, spans per
the messaging and HTTP client conventions, nothing from a command's body, and nothing at all when off."""

from __future__ import annotations

import json
from collections.abc import Iterator

import fakeredis
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from parley import tracing
from parley.producer import Producer
from parley.settings import Settings
from tests.test_schemas import VALID

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"




@pytest.fixture
def off() -> Iterator[None]:
    tracing.install(None)
    yield
    tracing.reset()


def ids(span: ReadableSpan) -> str:
    """The trace and span ids of ``span`` as a ``traceparent`` writes them (its flags vary by SDK version)."""
    return f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-"


def only(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


def test_publish_span_gives_the_traceparent_of_itself(spans: InMemorySpanExporter) -> None:
    with tracing.publishing("parley:commands") as traced:
        pass
    span = only(spans)
    assert traced.traceparent is not None and traced.traceparent.startswith(ids(span))
    assert span.name == "publish parley:commands" and span.kind is SpanKind.PRODUCER
    assert dict(span.attributes or {}) == {
        "messaging.system": "redis", "messaging.destination.name": "parley:commands",
        "messaging.operation.type": "publish", "messaging.operation.name": "publish"}


def test_process_span_is_the_child_of_the_carried_traceparent(spans: InMemorySpanExporter) -> None:
    with tracing.processing("parley.commands", TRACEPARENT, "cmd-1", "message.send") as traced:
        inner = tracing.current_traceparent()
    span = only(spans)
    assert span.kind is SpanKind.CONSUMER and span.name == "process parley.commands"
    assert span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert span.parent is not None and span.parent.span_id == 0xB7AD6B7169203331 and span.parent.is_remote
    assert inner == traced.traceparent and traced.traceparent.split("-")[2] == f"{span.context.span_id:016x}"
    assert span.attributes["messaging.message.id"] == "cmd-1"
    assert span.attributes["parley.command.type"] == "message.send"


@pytest.mark.parametrize("carried", [None, "", "garbage", "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                                     "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"])
def test_missing_or_unreadable_traceparent_starts_a_new_trace(spans: InMemorySpanExporter, carried: str | None) -> None:
    with tracing.processing("parley.commands", carried):
        pass
    span = only(spans)
    assert span.parent is None and span.context.trace_id != 0x0AF7651916CD43DD8448EB211C80319C


def test_a_failing_block_records_the_exception_type_never_its_text(spans: InMemorySpanExporter) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), tracing.processing("parley.commands", TRACEPARENT):
        raise Boom("Dear Ada, your order 42 shipped")
    span = only(spans)
    assert span.status.status_code is StatusCode.ERROR and not span.status.description
    assert span.attributes["error.type"].endswith("Boom")
    assert not span.events  # no exception event: its message and stack would be recorded
    assert "Ada" not in span.to_json()


def test_genesys_call_span_is_a_client_child_with_the_route_not_the_ids(spans: InMemorySpanExporter) -> None:
    request = httpx.Request("POST", "https://api.mypurecloud.ie/api/v2/conversations/"
                            "1b2c3d4e-1111-2222-3333-444455556666/cobrowse?customer=ada@example.com")
    with tracing.processing("parley.commands", TRACEPARENT):
        tracing.http_call(request).end(201)
        tracing.http_call(request).end(503)
        tracing.http_call(request).end(error="timeout")
    ok, unavailable, timed_out, parent = spans.get_finished_spans()
    assert ok.kind is SpanKind.CLIENT and ok.name == "POST /api/v2/conversations/{id}/cobrowse"
    assert ok.parent is not None and ok.parent.span_id == parent.context.span_id
    assert dict(ok.attributes or {}) == {
        "http.request.method": "POST", "url.template": "/api/v2/conversations/{id}/cobrowse",
        "server.address": "api.mypurecloud.ie", "http.response.status_code": 201}
    assert ok.status.status_code is StatusCode.UNSET
    assert unavailable.status.status_code is StatusCode.ERROR and unavailable.attributes["error.type"] == "503"
    assert timed_out.attributes["error.type"] == "timeout" and "http.response.status_code" not in timed_out.attributes
    assert "ada@example.com" not in "".join(s.to_json() for s in spans.get_finished_spans())


def test_producer_puts_the_traceparent_of_its_publish_span_in_the_entry(spans: InMemorySpanExporter) -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    Producer(client, Settings()).submit(VALID["cobrowse.start"])
    ((_, fields),) = client.xrange("parley:commands")
    span = only(spans)
    assert fields[tracing.TRACEPARENT].startswith(ids(span))
    assert json.loads(fields["command"]) == VALID["cobrowse.start"]
    assert "cobrowse" not in json.dumps(dict(span.attributes or {}))  # the body never reaches a span


def test_off_nothing_is_traced_and_a_carried_traceparent_passes_on_unchanged(off: None) -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    Producer(client, Settings()).submit(VALID["cobrowse.start"])
    ((_, fields),) = client.xrange("parley:commands")
    assert set(fields) == {"command"}
    with tracing.processing("parley:commands", TRACEPARENT) as traced:
        assert tracing.current_traceparent() is None
    assert traced.traceparent == TRACEPARENT  # ingest without tracing still links the producer to the runner
    call = tracing.http_call(httpx.Request("GET", "https://api.example/x"))
    call.end(200)
    assert call.span is None


def test_off_unless_configured(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from parley.settings import get_settings

    tracing.reset()
    get_settings.cache_clear()
    monkeypatch.delenv("PARLEY_OTEL_ENABLED", raising=False)
    try:
        with tracing.publishing("parley:commands") as traced:
            assert traced.traceparent is None
        tracing.reset()
        get_settings.cache_clear()
        monkeypatch.setenv("PARLEY_OTEL_ENABLED", "true")
        monkeypatch.setenv("PARLEY_OTEL_SPANS_FILE", str(tmp_path / "spans.jsonl"))
        with tracing.publishing("parley:commands") as traced:
            assert traced.traceparent is not None
        (line,) = (tmp_path / "spans.jsonl").read_text().splitlines()
        assert json.loads(line)["name"] == "publish parley:commands"
    finally:
        tracing.reset()
        get_settings.cache_clear()


def test_a_frame_sent_for_a_command_joins_its_trace_and_a_frame_for_none_makes_no_span(
        spans: InMemorySpanExporter) -> None:
    with tracing.frame(TRACEPARENT):
        pass
    with tracing.frame(None):
        pass
    span = only(spans)
    assert span.name == "send websocket" and span.kind is SpanKind.PRODUCER
    assert span.parent is not None and span.parent.span_id == 0xB7AD6B7169203331
    assert dict(span.attributes or {}) == {"network.protocol.name": "websocket"}


def test_genesys_calls_join_the_trace_of_a_joined_block_and_make_no_span_outside_any(
        spans: InMemorySpanExporter) -> None:
    request = httpx.Request("POST", "https://api.mypurecloud.ie/api/v2/webchat/guest/conversations")
    tracing.http_call(request).end(200)  # a session's own call, about no command
    assert spans.get_finished_spans() == ()
    with tracing.joined(TRACEPARENT):
        call = tracing.http_call(request)
    call.end(200)
    span = only(spans)
    assert span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert span.parent is not None and span.parent.span_id == 0xB7AD6B7169203331
    assert tracing.current_traceparent() is None  # the block's context is gone after it
