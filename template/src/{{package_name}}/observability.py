"""Structured logging with request context and redaction, and the token-guarded metrics endpoint."""

from __future__ import annotations

import contextlib
import functools
import hmac
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, Request, Response
from limits import parse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import tracing
from .config import Settings
from .errors import NotFound, TooManyRequests, Unauthorized
from .ratelimit import Policy

SENSITIVE_KEYS = ("password", "secret", "token", "authorization", "cookie", "api_key", "apikey")
REDACTED = "[redacted]"


@functools.lru_cache(maxsize=4096)
def _sensitive(key: str) -> bool:
    """Field names come from a small set (the code's), so the answer is cached per name."""
    lowered = key.lower()
    return any(marker in lowered for marker in SENSITIVE_KEYS)


_SCALARS = frozenset((str, int, float, bool, type(None)))  # most values: no ABC check needed


def _redact_value(key: str, value: Any) -> Any:
    if _sensitive(key):
        return REDACTED
    if type(value) in _SCALARS or not isinstance(value, Mapping):
        return value
    return {k: _redact_value(str(k), v) for k, v in value.items()}


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of any field whose name says it holds a secret."""
    for key, value in event.items():
        if key == "event" or (type(value) in _SCALARS and not _sensitive(key)):
            continue  # the common case, decided without a call
        redacted = _redact_value(key, value)
        if redacted is not value:
            event[key] = redacted  # a value, not a key: the iteration stays valid
    return event


class UTCTimestamp:
    """The `timestamp` of a line: ISO 8601 in UTC to the microsecond, as structlog's
    `TimeStamper(fmt="iso", utc=True)` writes it ("2026-12-07T09:05:24.137484Z", though the
    microseconds are there even when they are zero), at a fraction of its cost: the date and
    time of the current second are formatted once a second."""

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._clock_ns = clock_ns
        self._second: tuple[int, str] = (-1, "")  # one tuple: another thread reads it whole

    def __call__(
        self, _: Any, __: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        whole, nanoseconds = divmod(self._clock_ns(), 1_000_000_000)
        second, formatted = self._second
        if whole != second:
            formatted = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            self._second = (whole, formatted)
        event["timestamp"] = f"{formatted}.{nanoseconds // 1000:06d}Z"
        return event


# Dates and dataclasses go to `default`, as they do with the standard library.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def to_json(event: Any, **dumps_kw: Any) -> str:
    """The JSON renderer's serializer: orjson, at a tenth of the standard library's cost per
    line. The standard library writes what orjson refuses (integers beyond 64 bits, keys that
    are not strings) and the lines orjson would write with non-ASCII text, which it escapes:
    every line stays ASCII, whatever the stream's encoding, and nothing a line splitter takes
    for a line break (U+2028) is written raw. Values neither knows go to `dumps_kw["default"]`
    (structlog's: `repr`); orjson writes UUIDs and enums by value and NaN as null."""
    try:
        line = orjson.dumps(event, default=dumps_kw.get("default"), option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(event, **dumps_kw)
    return line.decode() if line.isascii() else json.dumps(event, **dumps_kw)


class _Output:
    """Where the service's own log lines go: the handler `configure_logging` installed last
    on the root logger (its stream, its lock), so they share one stream with the libraries'
    lines. structlog caches a logger on first use, so the handler is looked up here for every
    line, never captured."""

    def __init__(self) -> None:
        self.handler: logging.StreamHandler[Any] = logging.StreamHandler(sys.stdout)


_output = _Output()
_LEVELS = {name.lower(): number for name, number in logging.getLevelNamesMapping().items()}


def _drop_below_level(
    _: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if _LEVELS[method] < logging.root.level:  # the stdlib's level holds for both kinds of line
        raise structlog.DropEvent
    return event


class LineLogger:
    """The end of structlog's chain: writes the rendered line itself. Going through the stdlib
    instead (a LogRecord, the formatter's copy of it, a walk up the stack for the caller) cost
    more than the rest of a `/health/live` request (docs/performance.md)."""

    __slots__ = ("name",)

    def __init__(self, name: str = "") -> None:
        self.name = name  # for structlog.stdlib.add_logger_name

    def _write(self, line: str) -> None:
        handler = _output.handler
        with handler.lock or contextlib.nullcontext():
            handler.stream.write(line + "\n")
            handler.stream.flush()

    debug = info = warning = error = critical = _write


def _line_logger(*args: Any) -> LineLogger:
    return LineLogger(args[0] if args else "")


def configure_logging(settings: Settings) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        tracing.add_trace_ids,  # a no-op while tracing is off
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        UTCTimestamp(),
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=to_json, separators=(",", ":"))
        if settings.json_logs
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    level = logging.DEBUG if settings.debug else _LEVELS[settings.log_level.lower()]
    # The service's own lines: filtered, enriched and rendered by structlog, written by
    # LineLogger. `make_filtering_bound_logger(DEBUG)` only gives the level methods (and
    # `exception`); the level is the root logger's, which reconfigurations change.
    structlog.configure(
        processors=[_drop_below_level, *shared, structlog.processors.format_exc_info, renderer],
        logger_factory=_line_logger,
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=True,
    )
    # The libraries' lines (uvicorn, SQLAlchemy, httpx, ...) go through the stdlib, rendered
    # the same way.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,  # a library's traceback, as text
                renderer,
            ],
            foreign_pre_chain=shared,
        )
    )
    _output.handler = handler
    # Nothing rendered uses the thread or process of a record: skip looking them up for every
    # line (the logging HOWTO's "Optimization"). The caller's file and line stay: test reports
    # and plain-text handlers show them.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own access log is replaced by ours (one line per request, with request id).
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


metrics_router = APIRouter(include_in_schema=False)


@functools.cache
def _metrics_policy(value: str) -> Policy:
    return Policy("metrics", parse(value))


@metrics_router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus exposition, only with `Authorization: Bearer $METRICS_TOKEN`.
    Without a configured token the endpoint does not exist."""
    settings = request.app.state.settings
    expected = settings.metrics_token
    if expected is None:
        raise NotFound()
    # Counted before the token is compared: a token cannot be guessed faster than the limit.
    client = request.client.host if request.client else "unknown"
    decision = await request.app.state.rate_limiter.hit(
        _metrics_policy(settings.rate_limit_metrics), "ip:" + client
    )
    if not decision.allowed:
        headers = {name.decode(): value.decode() for name, value in decision.headers()}
        raise TooManyRequests(decision.reset_after, headers=headers)
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.encode(), expected.get_secret_value().encode()
    ):
        raise Unauthorized("A valid metrics token is required.")
    body = generate_latest(request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
