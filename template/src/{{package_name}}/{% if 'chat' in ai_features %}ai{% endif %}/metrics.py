"""Prometheus metrics of AI chat, on the application's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class ChatMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.tokens = Counter(
            "ai_tokens_total",
            "Tokens charged to quotas, by model and kind (prompt or completion).",
            ["model", "kind"],
            registry=registry,
        )
        self.cost = Counter(
            "ai_cost_micros_total",
            "Cost of provider calls in micro-units of AI_CURRENCY, by model.",
            ["model"],
            registry=registry,
        )
        self.latency = Histogram(
            "ai_upstream_latency_seconds",
            "Duration of provider calls, by model.",
            ["model"],
            buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
            registry=registry,
        )
        self.errors = Counter(
            "ai_upstream_errors_total",
            "Failed provider calls, by model and reason.",
            ["model", "reason"],
            registry=registry,
        )
        self.refusals = Counter(
            "ai_quota_refusals_total",
            "Chats refused before the call, by reason.",
            ["reason"],
            registry=registry,
        )
