"""Traces across hosts (optional): OpenTelemetry spans of one command, from the producer's XADD to each
Genesys call, whatever process or host each step runs on.

Off unless ``PARLEY_OTEL_ENABLED`` (and the ``otel`` extra installed): then every call here is one check
of a module-level value and returns a shared do-nothing object. On, spans follow the OpenTelemetry
messaging conventions (``messaging.system`` ``redis``, ``messaging.destination.name``,
``messaging.operation.type`` ``publish`` / ``process``, ``messaging.message.id`` = the command id) and
the HTTP client conventions for Genesys calls (``http.request.method``, ``url.template`` with every id
replaced by ``{id}``, ``http.response.status_code``). They go to the OTLP endpoint of the standard
``OTEL_EXPORTER_OTLP_*`` variables, or to ``PARLEY_OTEL_SPANS_FILE`` as JSON lines.

**Propagation**: the W3C ``traceparent`` travels as a field of the stream entry (the producer's span) and
of the command record (ingest's span): the Celery task and the guest worker read it from the record, so
Celery arguments stay ids only. A ``traceparent`` is random ids and flags, never customer data.

**Never recorded**: customer text, tokens, customer, conversation or session ids, exception messages (a
failed span has only the exception's type as ``error.type``). Attributes are set here, from names and
numbers, never from a command's body.
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger("parley.tracing")

TRACEPARENT = "traceparent"
"""The field carrying the W3C trace context in a stream entry and in a command record."""
_TRACEPARENT_FORMAT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_UNDECIDED: Any = object()
_tracer: Tracer | None = _UNDECIDED
"""Decided on first use (after a Celery worker's fork): None when tracing is off."""


class Traced:
    """The span a block runs in: what to carry on (``traceparent``) and how to add attributes."""

    __slots__ = ("span", "traceparent")

    def __init__(self, span: Span | None, traceparent: str | None) -> None:
        self.span = span
        self.traceparent = traceparent
        """The context to carry in what this block writes (a stream entry, a record); with tracing off in
        this process, the one that came in, passed on unchanged."""

    def set(self, message_id: str | None = None, command_type: str | None = None) -> None:
        """Attributes known only inside the block (the command id ingest gives a command)."""
        if self.span is not None:
            self.span.set_attributes(_command_attributes(message_id, command_type))

    def __enter__(self) -> Traced:
        return self

    def __exit__(self, *_: object) -> None:
        return None


class _Active(AbstractContextManager[Traced]):
    """A span made current for a block; a class, not a generator: frozen exceptions such as the runner's
    ``RetryLater`` refuse the traceback a generator context manager writes."""

    def __init__(self, tracer: Tracer, name: str, kind: Any, parent: str | None, attributes: dict[str, Any]) -> None:
        from opentelemetry import context, trace

        self._span = tracer.start_span(name, context=_extract(parent), kind=kind, attributes=attributes,
                                       record_exception=False, set_status_on_exception=False)
        self._token: object = None
        self._context, self._trace = context, trace

    def __enter__(self) -> Traced:
        self._token = self._context.attach(self._trace.set_span_in_context(self._span))
        return Traced(self._span, _inject(self._span))

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is not None:
            _failed(self._span, kind.__qualname__)
        self._context.detach(self._token)  # type: ignore[arg-type]
        self._span.end()


class _Joined(AbstractContextManager[object]):
    def __init__(self, traceparent: str | None) -> None:
        self._parent = _extract(traceparent)
        self._token: object = None

    def __enter__(self) -> None:
        from opentelemetry import context

        self._token = context.attach(self._parent)

    def __exit__(self, *_: object) -> None:
        from opentelemetry import context

        context.detach(self._token)  # type: ignore[arg-type]


class HttpCall:
    """A Genesys request's client span, ended by :meth:`end` once the answer (or its absence) is known.
    Never made current: it spans a ``yield`` of a plan, and nothing runs inside it."""

    __slots__ = ("span",)

    def __init__(self, span: Span | None) -> None:
        self.span = span

    def end(self, status: int | None = None, error: str | None = None) -> None:
        if self.span is None:
            return
        if status is not None:
            self.span.set_attribute("http.response.status_code", status)
            if status >= 400:
                _failed(self.span, str(status))
        if error is not None:
            _failed(self.span, error)
        self.span.end()


_NO_CALL = HttpCall(None)


# -- the call sites' entry points ---------------------------------------------------------------------
def publishing(destination: str) -> AbstractContextManager[Traced]:
    """A producer span ``publish <destination>``; its ``traceparent`` goes into the entry published."""
    tracer = _tracer if _tracer is not _UNDECIDED else _decide()
    if tracer is None:
        return Traced(None, None)
    from opentelemetry.trace import SpanKind

    return _Active(tracer, f"publish {destination}", SpanKind.PRODUCER, None, _messaging(destination, "publish"))


def processing(destination: str, traceparent: str | None, message_id: str | None = None,
               command_type: str | None = None) -> AbstractContextManager[Traced]:
    """A consumer span ``process <destination>``, child of ``traceparent`` (the span that published the
    message; none or unreadable: a new trace), current for the block."""
    tracer = _tracer if _tracer is not _UNDECIDED else _decide()
    if tracer is None:
        return Traced(None, traceparent)
    from opentelemetry.trace import SpanKind

    attributes = {**_messaging(destination, "process"), **_command_attributes(message_id, command_type)}
    return _Active(tracer, f"process {destination}", SpanKind.CONSUMER, traceparent, attributes)


def frame(traceparent: str | None) -> AbstractContextManager[Traced]:
    """A producer span ``send websocket`` for a guest socket frame sent while a command is in hand, child of
    that command's ``traceparent`` (its record's); no command in hand (keepalives, acks): no span."""
    tracer = _tracer if _tracer is not _UNDECIDED else _decide()
    if tracer is None or traceparent is None:
        return Traced(None, traceparent)
    from opentelemetry.trace import SpanKind

    return _Active(tracer, "send websocket", SpanKind.PRODUCER, traceparent, {"network.protocol.name": "websocket"})


def joined(traceparent: str | None) -> AbstractContextManager[object]:
    """Makes ``traceparent`` the current context for a block, with no span of its own: what the block
    starts (tasks copy the context) and the Genesys calls it makes join that trace."""
    tracer = _tracer if _tracer is not _UNDECIDED else _decide()
    if tracer is None or valid_traceparent(traceparent) is None:
        return Traced(None, traceparent)
    return _Joined(traceparent)


def http_call(request: httpx.Request) -> HttpCall:
    """A client span for one Genesys request, child of the current span, named by its route
    (:func:`parley.metrics.route`: ``POST /api/v2/conversations/{id}/cobrowse``, every id replaced;
    no query string, header or body). Outside any span (a guest session's own keepalive calls): none,
    rather than a trace of one span each."""
    tracer = _tracer if _tracer is not _UNDECIDED else _decide()
    if tracer is None:
        return _NO_CALL
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    if not trace.get_current_span().get_span_context().is_valid:
        return _NO_CALL

    from parley.metrics import route as route_of

    route = route_of(request.method, request.url.path)
    method, _, template = route.partition(" ")
    # server.address: the Genesys API's host (a region's), never a customer's.
    attributes: dict[str, Any] = {"http.request.method": method, "url.template": template,
                                  "server.address": request.url.host}
    return HttpCall(tracer.start_span(route, kind=SpanKind.CLIENT, attributes=attributes,
                                      record_exception=False, set_status_on_exception=False))


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, if tracing is on and a span is current."""
    tracer = _tracer if _tracer is not _UNDECIDED else _decide()
    if tracer is None:
        return None
    from opentelemetry import trace

    return _inject(trace.get_current_span())


def valid_traceparent(value: str | None) -> str | None:
    """``value`` if it is a W3C version-00 ``traceparent``, else None (what a producer sent is not trusted)."""
    return value if value is not None and _TRACEPARENT_FORMAT.fullmatch(value) else None


# -- configuration ------------------------------------------------------------------------------------
def install(provider: TracerProvider | None) -> None:
    """Trace into ``provider`` (tests: one with an in-memory exporter); None: tracing off. Without a call,
    the first span decides from the settings."""
    global _tracer
    _tracer = provider.get_tracer("parley") if provider is not None else None


def reset() -> None:
    """Decide again from the settings on next use (tests)."""
    global _tracer
    _tracer = _UNDECIDED


def _decide() -> Tracer | None:
    global _tracer
    _tracer = _configure()
    return _tracer


def _configure() -> Tracer | None:
    from parley.settings import get_settings

    settings = get_settings()
    if not settings.otel_enabled:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    except ImportError:
        log.warning("PARLEY_OTEL_ENABLED is set but OpenTelemetry is not installed (pip install 'parley[otel]'): "
                    "no traces")
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME",
                                                                                        "parley")}))
    if settings.otel_spans_file:
        # One line per span, written as it ends: processes that fork (Celery) share the file safely.
        out = open(settings.otel_spans_file, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - the process's
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(
            out=out, formatter=lambda span: span.to_json(indent=None) + "\n")))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # the OTEL_EXPORTER_OTLP_* variables
    log.info("tracing on: spans to %s", settings.otel_spans_file or "the OTLP endpoint")
    return provider.get_tracer("parley")


# -- helpers ------------------------------------------------------------------------------------------
def _messaging(destination: str, operation: str) -> dict[str, Any]:
    return {"messaging.system": "redis", "messaging.destination.name": destination,
            "messaging.operation.type": operation, "messaging.operation.name": operation}


def _command_attributes(message_id: str | None, command_type: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if message_id:
        attributes["messaging.message.id"] = message_id  # Parley's command id: not a customer's
    if command_type:
        attributes["parley.command.type"] = command_type
    return attributes


def _extract(traceparent: str | None) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if valid_traceparent(traceparent) is None:
        return None
    return TraceContextTextMapPropagator().extract({TRACEPARENT: traceparent})


def _inject(span: Span) -> str | None:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, trace.set_span_in_context(span))
    return carrier.get(TRACEPARENT)


def _failed(span: Span, error_type: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR))  # no description: an exception's text may quote customer data

