"""Rate limiting on the `limits` library: named policies, one storage, a storage-outage policy."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import Storage as AsyncStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from .config import Settings
from .errors import ServiceUnavailable
from .metrics import Metrics

logger = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    item: RateLimitItem

    @property
    def header(self) -> str:
        """The `RateLimit-Policy` value: quota and window in seconds."""
        return f"{self.item.amount};w={self.item.get_expiry()}"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    policy: Policy
    remaining: int
    reset_after: int
    counted: bool = True  # False when limiting is off or its storage failed open

    def headers(self) -> list[tuple[bytes, bytes]]:
        if not self.counted:
            return []
        pairs = [
            (b"ratelimit-limit", str(self.policy.item.amount).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_after).encode()),
            (b"ratelimit-policy", self.policy.header.encode()),
        ]
        if not self.allowed:
            pairs.append((b"retry-after", str(max(self.reset_after, 1)).encode()))
        return pairs


def _policy(name: str, value: str) -> Policy:
    return Policy(name, parse(value))


class RateLimiter:
    """Counts hits per policy and key. When the storage raises (ratelimit_storage absorbs the
    outages it can survive itself), the request gets 503 if `fail_closed`, else goes through,
    counted and logged."""

    def __init__(
        self,
        settings: Settings,
        storage: AsyncStorage,
        *,
        fail_closed: bool,
        metrics: Metrics,
    ) -> None:
        self.enabled = settings.rate_limit_enabled
        self.default = _policy("default", settings.rate_limit_default)
        self.auth = _policy("auth", settings.rate_limit_auth)
        self.login_failures = _policy("login_failures", settings.rate_limit_login_failures)
        self.login_failures_per_client = _policy(
            "login_failures_per_client", settings.rate_limit_login_failures_per_client
        )
        self.fail_closed = fail_closed
        self._storage = storage  # from ratelimit_storage.create_storage: the variant's backend
        self._strategy = SlidingWindowCounterRateLimiter(self._storage)
        self._metrics = metrics

    async def hit(self, policy: Policy, key: str) -> Decision:
        """Count one request against `policy` for `key` and say whether it may proceed."""
        if not self.enabled:
            return Decision(True, policy, policy.item.amount, 0, counted=False)
        try:
            allowed = await self._strategy.hit(policy.item, policy.name, key)
            stats = await self._strategy.get_window_stats(policy.item, policy.name, key)
        except Exception as error:
            return self._storage_failed(policy, error)
        if not allowed:
            self._metrics.rate_limited.labels(policy.name).inc()
        reset_after = max(0, math.ceil(stats.reset_time - time.time()))
        return Decision(allowed, policy, max(stats.remaining, 0), reset_after)

    async def exhausted(self, policy: Policy, key: str) -> Decision | None:
        """A refusing decision when `key` has no hit left under `policy`; None otherwise."""
        if not self.enabled:
            return None
        try:
            if await self._strategy.test(policy.item, policy.name, key):
                return None
            stats = await self._strategy.get_window_stats(policy.item, policy.name, key)
        except Exception as error:
            decision = self._storage_failed(policy, error)
            return None if decision.allowed else decision
        self._metrics.rate_limited.labels(policy.name).inc()
        return Decision(False, policy, 0, max(1, math.ceil(stats.reset_time - time.time())))

    def _storage_failed(self, policy: Policy, error: Exception) -> Decision:
        self._metrics.rate_limit_storage_errors.inc()
        logger.error(
            "rate_limit_storage_error",
            policy=policy.name,
            error=type(error).__name__,
            fail_closed=self.fail_closed,
        )
        if self.fail_closed:
            raise ServiceUnavailable("Rate limiting is unavailable; retry later.") from error
        return Decision(True, policy, policy.item.amount, 0, counted=False)

    async def check_storage(self) -> bool:
        return bool(await self._storage.check())

    async def reset(self) -> None:
        await self._storage.reset()

    async def close(self) -> None:
        close = getattr(self._storage, "close", None)
        if close is not None:
            await close()


def account_key(email: str) -> str:
    """A stable key for per-account counters that keeps the address itself out of the store."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()
