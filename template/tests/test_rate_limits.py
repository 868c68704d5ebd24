"""Rate limits: per-client auth policy, per-user default policy, failed-login throttling."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from .conftest import PASSWORD, Harness, clear_of_window_end

LOGIN = "/api/v1/auth/login"


async def test_responses_carry_ratelimit_headers(harness: Harness) -> None:
    user = await harness.user()
    response = await user.get("/api/v1/users/me")
    assert response.headers["ratelimit-limit"] == "120"
    assert int(response.headers["ratelimit-remaining"]) < 120
    assert response.headers["ratelimit-policy"] == "120;w=60"


async def test_auth_policy_limits_each_client(
    start_app: Callable[..., Any], make_settings: Callable[..., Any]
) -> None:
    async with start_app(make_settings(rate_limit_auth="3/minute")) as harness:
        await clear_of_window_end()
        body = {"email": "nobody@example.com", "password": "whatever-it-is"}
        statuses = [(await harness.client.post(LOGIN, json=body)).status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        refused = await harness.client.post("/api/v1/auth/register", json=body)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["ratelimit-remaining"] == "0"


async def test_default_policy_is_counted_per_user(
    start_app: Callable[..., Any], make_settings: Callable[..., Any]
) -> None:
    async with start_app(make_settings(rate_limit_default="3/minute")) as harness:
        alice, bob = await harness.user(), await harness.user()
        await clear_of_window_end()
        statuses = [(await alice.get("/api/v1/users/me")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        assert (await bob.get("/api/v1/users/me")).status_code == 200
        # Anonymous callers share their IP's bucket, and a forged token does not escape it.
        anonymous = [
            (await harness.client.get("/api/v1/users/me", headers=h)).status_code
            for h in ({}, {}, {}, {"Authorization": "Bearer forged"})
        ]
        assert anonymous == [401, 401, 401, 429]


async def test_failed_logins_lock_the_account_not_the_password_check(
    start_app: Callable[..., Any], make_settings: Callable[..., Any]
) -> None:
    async with start_app(make_settings(rate_limit_login_failures="3/15 minutes")) as harness:
        user = await harness.register()
        for _ in range(3):
            wrong = await harness.client.post(
                LOGIN, json={"email": user.email, "password": "guess-guess"}
            )
            assert wrong.status_code == 401
        # Even the right password is refused now: brute force gains nothing by guessing right.
        locked = await harness.client.post(LOGIN, json={"email": user.email, "password": PASSWORD})
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) > 0
        # The same throttle applies to accounts that do not exist.
        for _ in range(3):
            await harness.client.post(LOGIN, json={"email": "ghost@example.com", "password": "x1"})
        ghost = await harness.client.post(
            LOGIN, json={"email": "ghost@example.com", "password": "x1"}
        )
        assert ghost.status_code == 429
        other = await harness.register()
        assert (
            await harness.client.post(LOGIN, json={"email": other.email, "password": PASSWORD})
        ).status_code == 200


async def test_failed_logins_are_throttled_per_client(
    start_app: Callable[..., Any], make_settings: Callable[..., Any]
) -> None:
    settings = make_settings(rate_limit_login_failures_per_client="4/15 minutes")
    async with start_app(settings) as harness:
        for index in range(4):
            body = {"email": f"spray{index}@example.com", "password": "spray-pass"}
            assert (await harness.client.post(LOGIN, json=body)).status_code == 401
        sprayed = await harness.client.post(
            LOGIN, json={"email": "new@example.com", "password": "x"}
        )
        assert sprayed.status_code == 429


async def test_limits_can_be_switched_off(
    start_app: Callable[..., Any], make_settings: Callable[..., Any]
) -> None:
    async with start_app(make_settings(rate_limit_enabled=False, rate_limit_auth="1/minute")) as h:
        body = {"email": "nobody@example.com", "password": "whatever-it-is"}
        statuses = {(await h.client.post(LOGIN, json=body)).status_code for _ in range(3)}
        assert statuses == {401}


async def test_rate_limit_hits_are_counted_in_metrics(
    start_app: Callable[..., Any], make_settings: Callable[..., Any]
) -> None:
    settings = make_settings(rate_limit_auth="1/minute", metrics_token="m" * 32)
    async with start_app(settings) as harness:
        await clear_of_window_end()
        body = {"email": "nobody@example.com", "password": "whatever-it-is"}
        for _ in range(2):
            await harness.client.post(LOGIN, json=body)
        metrics = await harness.client.get(
            "/metrics", headers={"Authorization": "Bearer " + "m" * 32}
        )
        assert 'rate_limit_hits_total{policy="auth"} 1.0' in metrics.text


class _BrokenStrategy:
    async def hit(self, *args: Any) -> bool:
        raise ConnectionError("storage down")

    test = get_window_stats = hit


async def test_storage_failure_fails_open_and_is_counted(
    start_app: Callable[..., Any], make_settings: Callable[..., Any]
) -> None:
    async with start_app(make_settings(metrics_token="m" * 32)) as harness:
        harness.app.state.rate_limiter._strategy = _BrokenStrategy()
        user = await harness.register()
        await user.login()
        assert (await user.get("/api/v1/users/me")).status_code == 200
        metrics = await harness.client.get(
            "/metrics", headers={"Authorization": "Bearer " + "m" * 32}
        )
        assert "rate_limit_storage_errors_total 0.0" not in metrics.text


async def test_storage_failure_fails_closed_when_configured(harness: Harness) -> None:
    limiter = harness.app.state.rate_limiter
    limiter._strategy = _BrokenStrategy()
    limiter.fail_closed = True
    response = await harness.client.get("/api/v1/users/me")
    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
    login = await harness.client.post(
        "/api/v1/auth/register", json={"email": "x@example.com", "password": PASSWORD}
    )
    assert login.status_code == 503


async def test_refunds_never_leave_credit_behind(harness: Harness) -> None:
    """A refund gives back a unit the window still holds, never more: a failed login whose
    later charge refuses gives its earlier ones back, and when such attempts straddle the
    moment a window moves on, a refund can find nothing to take. A count below zero would
    admit more than the limit; 25 refunds of nothing, then 25 parallel attempts, admit 5."""
    limiter = harness.app.state.rate_limiter
    policy, key = limiter.login_failures, f"refund-test-{uuid.uuid4().hex}"  # 5 per 15 minutes
    await asyncio.gather(*(limiter.refund(policy, key) for _ in range(25)))
    decisions = await asyncio.gather(*(limiter.hit(policy, key) for _ in range(25)))
    assert sum(decision.allowed for decision in decisions) == policy.item.amount == 5
    # And a refund does give back what was taken: one more unit, one more attempt.
    await limiter.refund(policy, key)
    assert (await limiter.hit(policy, key)).allowed
    assert not (await limiter.hit(policy, key)).allowed
