"""Request id, trace id, one access-log line per request, and the HTTP metrics: the outermost
middleware."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..metrics import Metrics

REQUEST_ID_HEADER = b"x-request-id"
TRACEPARENT_HEADER = b"traceparent"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
# W3C Trace Context: version-traceid-parentid-flags; an all-zero trace id is invalid.
_TRACEPARENT = re.compile(rb"^[0-9a-f]{2}-(?!0{32})([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")

# A metric label takes a method from this set or `OTHER`: the method is the client's word,
# and every new value of a label is a new series kept in memory for the life of the process.
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


class RequestContextMiddleware:
    """Echoes a well-formed incoming `X-Request-ID` or makes one, binds it, the W3C trace id of
    a well-formed `traceparent` (and later the user id) to every log line of the request, then
    logs and measures the request once."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # Bound once, when the app builds its middleware (after `configure_logging`): a logger
        # from `structlog.get_logger` at module level would look itself up on every line.
        self.access_log = structlog.get_logger("access").bind()
        # The labelled children of the request metrics, looked up once per label set (the
        # client's method, a route template, a status: a bounded number of sets).
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _observe(self, method: str, template: str, status: int, elapsed: float) -> None:
        key = (method if method in KNOWN_METHODS else "OTHER", template, status)
        series = self._series.get(key)
        if series is None:
            label, route, _ = key
            series = self._series[key] = (
                self.metrics.requests.labels(label, route, str(status)),
                self.metrics.latency.labels(label, route),
            )
        series[0].inc()
        series[1].observe(elapsed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = b""
        trace_id: str | None = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER and _VALID_REQUEST_ID.match(value):
                request_id = value
            elif name == TRACEPARENT_HEADER and (trace := _TRACEPARENT.match(value)):
                trace_id = trace.group(1).decode()
        server_id = os.urandom(16).hex()  # as random as uuid4().hex, without building a UUID
        if not request_id:
            request_id = server_id.encode()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id.decode()
        state["server_request_id"] = server_id  # what the audit log records: never the client's
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=state["request_id"], trace_id=trace_id)
        self.metrics.requests_in_flight += 1
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.requests_in_flight -= 1
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            self._observe(method, template, status, elapsed)
            client = scope.get("client")
            self.access_log.info(
                "request",
                method=method,
                path=scope["path"],
                route=template,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                client_ip=client[0] if client else None,
                user_id=state.get("user_id"),
            )
            structlog.contextvars.unbind_contextvars("request_id", "trace_id")
