"""Prometheus metrics, one registry per application instance."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


class DatabasePoolCollector(Collector):
    """The engine's connection pool, read at scrape time: connections in use, idle, and
    requests waiting for one (the pool is exhausted while any wait)."""

    def __init__(self) -> None:
        self.engine: AsyncEngine | None = None  # set by the lifespan while the engine exists

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pool: Any = self.engine.pool if self.engine is not None else None
        if pool is None or not hasattr(pool, "checkedout"):
            return  # no engine yet, or a pool without counters (NullPool, StaticPool)
        yield GaugeMetricFamily(
            "db_pool_connections_in_use", "Connections checked out of the pool.", pool.checkedout()
        )
        yield GaugeMetricFamily(
            "db_pool_connections_idle", "Connections idle in the pool.", pool.checkedin()
        )
        yield GaugeMetricFamily(
            "db_pool_requests_waiting",
            "Requests waiting for a connection because the pool and its overflow are in use.",
            _waiting(pool),
        )


def _waiting(pool: Any) -> int:
    """Waiters on the asyncio queue of SQLAlchemy's async queue pool. SQLAlchemy exposes no
    counter for them, so this reads the queue without creating it (0 when it cannot)."""
    queue = vars(getattr(pool, "_pool", None) or object()).get("_queue")
    getters = getattr(queue, "_getters", None) or ()
    return sum(1 for waiter in getters if not waiter.done())


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        # Counted by RequestContextMiddleware on the event loop's thread, read at scrape time:
        # no lock taken twice per request.
        self.requests_in_flight = 0
        in_flight = Gauge(
            "http_requests_in_flight", "HTTP requests being served.", registry=self.registry
        )
        in_flight.set_function(lambda: self.requests_in_flight)
        self.auth_failures = Counter(
            "auth_failures_total",
            "Rejected authentications by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "rate_limit_hits_total",
            "Requests refused by a rate-limit policy.",
            ["policy"],
            registry=self.registry,
        )
        self.rate_limit_decisions = Counter(
            "rate_limit_decisions_total",
            "Rate-limit decisions by policy: allowed, limited, or error (the storage failed).",
            ["policy", "decision"],
            registry=self.registry,
        )
        self.rate_limit_storage_errors = Counter(
            "rate_limit_storage_errors_total",
            "Rate-limit storage failures (the request was let through unless fail-closed).",
            registry=self.registry,
        )
        self.database_pool = DatabasePoolCollector()
        self.registry.register(self.database_pool)
