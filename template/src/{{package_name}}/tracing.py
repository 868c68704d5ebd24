"""OpenTelemetry traces over OTLP/HTTP, started only when OTEL_EXPORTER_OTLP_ENDPOINT is set.

The SDK is imported by `Tracing.start` (in the lifespan), never at import time: a service without
an endpoint never loads it, and every helper here is then one `is None` check. Spans are written
by hand (request, SQL statement, password hash, rate-limit storage call, provider call) rather
than by the instrumentation packages, which patch libraries process-wide and record what this
service must not export: SQL parameters, rate-limit keys (client addresses), request headers.
Span attributes carry route templates, statement text with its placeholders and status codes,
nothing a user typed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from importlib import metadata
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._project import PROJECT_SLUG

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .config import Settings

AttributeValue = str | bool | int | float

# The tracer of the running service, None while tracing is off. One per process, as the
# OpenTelemetry SDK intends; set by `Tracing.start` and cleared by `Tracing.shutdown`.
_tracer: Tracer | None = None


def package_version() -> str:
    try:
        return metadata.version(PROJECT_SLUG)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0"


class Tracing:
    """The tracer provider of one application: built by `create_app` when an endpoint is set,
    started and shut down (which flushes the last spans) by the lifespan."""

    def __init__(self, settings: Settings) -> None:
        assert settings.otel_exporter_otlp_endpoint
        self._endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        self._service_name = settings.otel_service_name
        self._provider: TracerProvider | None = None

    def start(self) -> None:
        global _tracer
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # The sampler (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG), OTEL_RESOURCE_ATTRIBUTES
        # and the exporter's headers, timeout and compression come from the environment.
        resource = Resource.create(
            {SERVICE_NAME: self._service_name, SERVICE_VERSION: package_version()}
        )
        self._provider = TracerProvider(resource=resource)
        self._provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=self._endpoint))
        )
        _tracer = self._provider.get_tracer(__package__ or PROJECT_SLUG, package_version())

    def force_flush(self) -> bool:
        return self._provider.force_flush() if self._provider is not None else True

    def shutdown(self) -> None:
        global _tracer
        if self._provider is None:
            return
        _tracer = None
        self._provider.shutdown()
        self._provider = None


def active() -> bool:
    return _tracer is not None


@contextlib.contextmanager
def _span(
    tracer: Tracer, name: str, kind: str, attributes: Mapping[str, AttributeValue] | None
) -> Iterator[Span]:
    from opentelemetry.trace import SpanKind, Status, StatusCode

    # Exceptions are recorded by type only: their messages may quote what a user sent.
    with tracer.start_as_current_span(
        name,
        kind=SpanKind[kind.upper()],
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as error:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            raise


def span(
    name: str, *, kind: str = "internal", attributes: Mapping[str, AttributeValue] | None = None
) -> contextlib.AbstractContextManager[Span | None]:
    """A child span of the current one while tracing is on; nothing otherwise."""
    if _tracer is None:
        return contextlib.nullcontext()
    return _span(_tracer, name, kind, attributes)


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the W3C `traceparent` of the current span to outgoing headers."""
    if _tracer is not None:
        from opentelemetry import propagate

        propagate.inject(headers)


def current_ids() -> tuple[str, str] | None:
    """The trace id and span id of the current span, in their W3C hex form."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the real span's ids on every log line written inside a span (the
    request context's `traceparent` parsing stays the answer while tracing is off)."""
    if _tracer is not None and (ids := current_ids()):
        event["trace_id"], event["span_id"] = ids
    return event


class TracingMiddleware:
    """A server span per HTTP request, continuing the caller's `traceparent`, named by method
    and route template once routing has matched (never the raw path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _tracer is None:
            await self.app(scope, receive, send)
            return
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind, Status, StatusCode

        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in (b"traceparent", b"tracestate")
        }
        method = scope["method"]
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with _tracer.start_as_current_span(
            method,
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.scheme": scope.get("scheme", "http")},
            record_exception=False,
            set_status_on_exception=False,
        ) as server_span:
            try:
                await self.app(scope, receive, send_with_status)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    server_span.update_name(f"{method} {route}")
                    server_span.set_attribute("http.route", route)
                server_span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    server_span.set_status(Status(StatusCode.ERROR))


def instrument_engine(engine: AsyncEngine) -> None:
    """A client span per SQL statement: its text, with placeholders, never its parameters."""
    if _tracer is None:
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from sqlalchemy import event

    system = engine.dialect.name
    key = "_tracing_span"

    def before(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if _tracer is None or context is None:
            return
        operation = (statement.split(None, 1) or ["SQL"])[0].upper()
        attributes = {"db.system": system, "db.operation": operation, "db.statement": statement}
        setattr(
            context,
            key,
            _tracer.start_span(
                f"{operation} {system}", kind=SpanKind.CLIENT, attributes=attributes
            ),
        )

    def after(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if (statement_span := getattr(context, key, None)) is not None:
            statement_span.end()

    def failed(error: Any) -> None:
        if (statement_span := getattr(error.execution_context, key, None)) is not None:
            name = type(error.original_exception).__name__
            statement_span.set_status(Status(StatusCode.ERROR, name))
            statement_span.end()

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
    event.listen(engine.sync_engine, "handle_error", failed)
