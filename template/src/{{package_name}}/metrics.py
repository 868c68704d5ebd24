"""Prometheus metrics, one registry per application instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.in_flight = Gauge(
            "http_requests_in_flight", "HTTP requests being served.", registry=self.registry
        )
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
        self.rate_limit_storage_errors = Counter(
            "rate_limit_storage_errors_total",
            "Rate-limit storage failures (the request was let through unless fail-closed).",
            registry=self.registry,
        )
