"""The lifespan of the service's telemetry: traces and error reports when their endpoints are
set (their SDKs are imported only then), and the database pool gauges."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from . import tracing
from .error_reporting import ErrorReporting

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .config import Settings


@asynccontextmanager
async def telemetry_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """Entered once the engine exists; leaving it flushes the last spans and error reports."""
    tracer = tracing.Tracing(settings) if settings.tracing_on else None
    reporter = ErrorReporting(settings) if settings.sentry_dsn is not None else None
    app.state.tracing, app.state.error_reporting = tracer, reporter
    app.state.metrics.database_pool.engine = app.state.engine
    try:
        if tracer is not None:
            tracer.start()
            tracing.instrument_engine(app.state.engine)
        if reporter is not None:
            reporter.start()
        yield
    finally:
        app.state.metrics.database_pool.engine = None
        # Both flush over the network: off the event loop.
        if reporter is not None:
            await anyio.to_thread.run_sync(reporter.close)
        if tracer is not None:
            await anyio.to_thread.run_sync(tracer.shutdown)
