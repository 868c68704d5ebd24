"""Rate limiting on the `limits` library: named policies, one storage, a storage-outage policy."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.storage import Storage as AsyncStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from .errors import ServiceUnavailable

if TYPE_CHECKING:  # config imports ratelimit_storage, which imports this module
    from .config import Settings
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


class GivesBack(Protocol):
    """What a storage adds to `limits`' for `RateLimiter.refund`."""

    async def give_back(self, key: str, expiry: int, amount: int = 1) -> None:
        """Take `amount` units off the current window of `key`, never below zero. A refund
        must leave no credit behind: `limits`' own (a negative cost) counts below zero when
        the unit was taken in a window that has moved on since, and a negative count admits
        more than the limit."""


class MemoryCounters(MemoryStorage):
    """`limits`' memory storage, with a refund that stops at zero. Built directly: a subclass
    that declares no `STORAGE_SCHEME` takes no URI scheme from `limits`' registry."""

    async def give_back(self, key: str, expiry: int, amount: int = 1) -> None:
        _, current = self.sliding_window_keys(key, expiry, time.time())
        await self.decr(current, amount)  # stops at 0; nothing in it yields: atomic


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
        # Credential checks: strict per account and client, looser per account and per client.
        self.login_failures = _policy("login_failures", settings.rate_limit_login_failures)
        self.login_failures_per_client = _policy(
            "login_failures_per_client", settings.rate_limit_login_failures_per_client
        )
        self.login_failures_per_account = _policy(
            "login_failures_per_account", settings.rate_limit_login_failures_per_account
        )
        self.password_reset_mails = _policy(
            "password_reset_mails", settings.rate_limit_password_reset_mails
        )
        self.verification_mails = _policy(
            "verification_mails", settings.rate_limit_verification_mails
        )
        self.audit_denials = _policy("audit_denials", settings.rate_limit_audit_denials)
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
            self._metrics.rate_limit_decisions.labels(policy.name, "error").inc()
            return self._storage_failed(policy, error)
        self._metrics.rate_limit_decisions.labels(
            policy.name, "allowed" if allowed else "limited"
        ).inc()
        if not allowed:
            self._metrics.rate_limited.labels(policy.name).inc()
        reset_after = max(0, math.ceil(stats.reset_time - time.time()))
        remaining = max(stats.remaining, 0) if allowed else 0  # another count may have refused
        return Decision(allowed, policy, remaining, reset_after)

    async def reserve(self, charges: list[tuple[Policy, str]]) -> Decision | None:
        """Take one unit under every (policy, key) *before* the check they guard: each `hit`
        is atomic in the storage, so parallel attempts cannot all pass a test made before any
        of them is counted. Returns the refusing decision (giving back the units already
        taken), or None when every policy admits the attempt."""
        taken: list[tuple[Policy, str]] = []
        for policy, key in charges:
            decision = await self.hit(policy, key)
            if not decision.allowed:
                for spent in taken:
                    await self.refund(*spent)
                return decision
            if decision.counted:
                taken.append((policy, key))
        return None

    async def refund(self, policy: Policy, key: str) -> None:
        """Give back a unit taken by `reserve`, e.g. when the credential check succeeded."""
        if not self.enabled:
            return
        storage = cast(GivesBack, self._storage)
        try:
            await storage.give_back(policy.item.key_for(policy.name, key), policy.item.get_expiry())
        except Exception as error:
            logger.warning(
                "rate_limit_refund_failed", policy=policy.name, error=type(error).__name__
            )

    async def within_budget(self, policy: Policy, key: str) -> bool:
        """Whether `key` may spend one more unit of a budget that must never fail a request
        (the audit of refusals): storage errors count as "yes", whatever `fail_closed` says."""
        if not self.enabled:
            return True
        try:
            return bool(await self._strategy.hit(policy.item, policy.name, key))
        except Exception as error:
            logger.warning(
                "rate_limit_budget_failed", policy=policy.name, error=type(error).__name__
            )
            return True

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
    """A stable key for per-account counters that keeps the (normalised) address itself out of
    the store."""
    return hashlib.sha256(email.encode()).hexdigest()
