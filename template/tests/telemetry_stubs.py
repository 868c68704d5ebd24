"""Local stand-ins on 127.0.0.1 for an OTLP/HTTP collector and for Sentry's ingest endpoint:
each decodes what the service sends (OTLP protobuf, Sentry envelopes) for the tests to read."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass
class Span:
    """One received span, its ids in W3C hex."""

    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


def _decompress(body: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli  # type: ignore[import-not-found]  # only if the SDK found it installed

        data: bytes = brotli.decompress(body)
        return data
    return body


class _Server:
    """A threaded HTTP server that hands each POST body to `receive`."""

    def __init__(self) -> None:
        receive = self.receive

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                reply = receive(self.path, _decompress(raw, self.headers.get("content-encoding")))
                self.send_response(200)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def receive(self, path: str, body: bytes) -> bytes:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class OTLPReceiver(_Server):
    """`OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url`: the spans arrive in `spans`."""

    def __init__(self) -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"
        self.paths: list[str] = []
        self.spans: list[Span] = []

    def receive(self, path: str, body: bytes) -> bytes:
        self.paths.append(path)
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        Span(
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            resource=resource,
                        )
                    )
        reply: bytes = ExportTraceServiceResponse().SerializeToString()
        return reply


@dataclass
class Envelope:
    headers: dict[str, Any]
    items: list[tuple[dict[str, Any], bytes]] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = [
            json.loads(body) for header, body in self.items if header.get("type") == "event"
        ]
        return found


def parse_envelope(body: bytes) -> Envelope:
    """Sentry's envelope format: a JSON header line, then per item a JSON header line and a
    payload (of `length` bytes when given, else up to the next newline)."""
    first, _, rest = body.partition(b"\n")
    envelope = Envelope(json.loads(first))
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        header = json.loads(line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] :]
            rest = rest.removeprefix(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        envelope.items.append((header, payload))
    return envelope


class SentryIngest(_Server):
    """`SENTRY_DSN=ingest.dsn`: what the SDK sends arrives in `envelopes`, as raw bytes too."""

    def __init__(self) -> None:
        super().__init__()
        self.dsn = f"http://public@127.0.0.1:{self.port}/1"
        self.paths: list[str] = []
        self.raw: list[bytes] = []
        self.envelopes: list[Envelope] = []

    def receive(self, path: str, body: bytes) -> bytes:
        self.paths.append(path)
        self.raw.append(body)
        self.envelopes.append(parse_envelope(body))
        return b"{}"

    def events(self) -> list[dict[str, Any]]:
        return [event for envelope in self.envelopes for event in envelope.events()]
