"""What chat keeps for the application's lifetime, and the lifespan hook that opens it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import structlog
from limits import parse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..database import utcnow
from ..ratelimit import Policy
from . import quota
from .metrics import ChatMetrics
from .providers import Provider, open_provider
from .safety import LinkPolicy

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..config import Settings

logger = structlog.get_logger(__name__)

SWEEP_INTERVAL_SECONDS = 60.0
DRAIN_SECONDS = 10.0


class ChatRuntime:
    """The provider, metrics and bookkeeping of calls in flight, shared by every request."""

    def __init__(
        self,
        settings: Settings,
        provider: Provider,
        metrics: ChatMetrics,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.metrics = metrics
        self.sessionmaker = sessionmaker
        self.links = LinkPolicy(settings.ai_allowed_link_hosts)
        self.rate_limit = Policy("ai", parse(settings.rate_limit_ai))
        self.in_flight = 0
        self._idle = anyio.Event()
        self._idle.set()
        self._last_sweep = float("-inf")

    def call_started(self) -> None:
        if self.in_flight == 0:
            self._idle = anyio.Event()
        self.in_flight += 1

    def call_ended(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no call holds a reservation (every one is settled or released)."""
        await self._idle.wait()

    async def sweep(self, *, force: bool = False) -> int:
        """Release reservations of calls that died with their process; at most once a minute
        per instance unless forced (startup)."""
        now = time.monotonic()
        if not force and now - self._last_sweep < SWEEP_INTERVAL_SECONDS:
            return 0
        self._last_sweep = now
        cutoff = utcnow() - timedelta(seconds=self.settings.ai_stale_reservation_seconds)
        try:
            released = await quota.release_stale(self.sessionmaker, cutoff)
        except Exception as error:  # an outage must not stop startup; the next sweep retries
            logger.warning("ai_sweep_failed", error=type(error).__name__)
            return 0
        if released:
            logger.warning("ai_stale_reservations_released", count=released)
        return released


@asynccontextmanager
async def chat_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    async with open_provider(settings) as provider:
        runtime = ChatRuntime(
            settings, provider, ChatMetrics(app.state.metrics.registry), app.state.sessionmaker
        )
        await runtime.sweep(force=True)  # calls of a process that crashed are not coming back
        app.state.ai = runtime
        try:
            yield
        finally:
            # Let calls in flight settle before the provider's client closes under them.
            with anyio.move_on_after(DRAIN_SECONDS):
                await runtime.wait_idle()
