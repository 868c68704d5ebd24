"""`/health/live` answers while the process runs; `/health/ready` checks every dependency and
answers 503 only when one the service cannot work without (the database) fails."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from .. import features, principal_channel

_LIVE = b'{"status":"ok"}'


def add_routes(app: FastAPI) -> None:
    """The probes' routes, on the app itself rather than on a router the app includes: FastAPI
    reaches an included router's routes through a layer of its own, which probes called every
    few seconds, and the floor of every request's cost, can do without."""
    app.add_api_route("/health/live", live, response_model=dict[str, str], tags=["health"])
    app.add_api_route(
        "/health/ready",
        ready,
        tags=["health"],
        responses={503: {"description": "A dependency is unavailable"}},
    )


async def live() -> Response:
    """The process runs. Answered with bytes made once: probes call this every few seconds,
    and it is the floor of every request's cost (docs/performance.md)."""
    return Response(_LIVE, media_type="application/json")


async def _database(request: Request) -> None:
    async with request.app.state.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _rate_limit_storage(request: Request) -> None:
    if not await request.app.state.rate_limiter.check_storage():
        raise ConnectionError("rate-limit storage did not answer")


CHECKS: dict[str, Callable[[Request], Awaitable[None]]] = {
    "database": _database,
    "rate_limit_storage": _rate_limit_storage,
}
# A failing check outside this set makes the service `degraded`, still ready: requests are
# served (rate limits fall back to per-instance memory), and taking every instance out of the
# load balancer at once would turn a partial outage into a total one.
CRITICAL_CHECKS = frozenset({"database"})


async def _run(check: Callable[[Request], Awaitable[None]], request: Request) -> dict[str, Any]:
    timeout = request.app.state.settings.readiness_timeout_seconds
    started = time.perf_counter()
    try:
        with anyio.fail_after(timeout):
            await check(request)
    except TimeoutError:
        return {"status": "fail", "error": f"timed out after {timeout}s"}
    except Exception as error:
        return {"status": "fail", "error": type(error).__name__}
    return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


async def ready(request: Request) -> JSONResponse:
    results: dict[str, dict[str, Any]] = {}

    async def run(name: str, check: Callable[[Request], Awaitable[None]]) -> None:
        results[name] = await _run(check, request)

    optional = {**principal_channel.readiness_checks(), **features.readiness_checks()}
    async with anyio.create_task_group() as group:
        for name, check in {**CHECKS, **optional}.items():
            group.start_soon(run, name, check)
    for name, result in results.items():
        if result["status"] == "fail" and name not in CRITICAL_CHECKS:
            result["status"] = "degraded"
    statuses = {result["status"] for result in results.values()}
    status = "unavailable" if "fail" in statuses else "degraded" if "degraded" in statuses else "ok"
    return JSONResponse(
        {"status": status, "checks": results},
        status_code=503 if status == "unavailable" else 200,
        headers={"Cache-Control": "no-store"},
    )
