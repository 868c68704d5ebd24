"""`/health/live` answers while the process runs; `/health/ready` checks every dependency."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from .. import features

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


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


@router.get("/ready", responses={503: {"description": "A dependency is unavailable"}})
async def ready(request: Request) -> JSONResponse:
    results: dict[str, dict[str, Any]] = {}

    async def run(name: str, check: Callable[[Request], Awaitable[None]]) -> None:
        results[name] = await _run(check, request)

    optional = features.readiness_checks()
    async with anyio.create_task_group() as group:
        for name, check in {**CHECKS, **optional}.items():
            group.start_soon(run, name, check)
    healthy = all(results[name]["status"] == "ok" for name in CHECKS)
    status = "ok" if all(result["status"] == "ok" for result in results.values()) else "degraded"
    return JSONResponse(
        {"status": status if healthy else "unavailable", "checks": results},
        status_code=200 if healthy else 503,
        headers={"Cache-Control": "no-store"},
    )
