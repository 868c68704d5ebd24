"""Dependencies of the AI routes: the runtime, and the `ai` rate-limit policy per user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..auth.dependencies import Principal, RateLimiterDep
from ..errors import ProblemError
from ..rbac.dependencies import Guard
from .permissions import AIPerm
from .runtime import ChatRuntime


async def get_runtime(request: Request) -> ChatRuntime:
    runtime: ChatRuntime = request.app.state.ai
    return runtime


RuntimeDep = Annotated[ChatRuntime, Depends(get_runtime)]


class AIRateLimited(ProblemError):
    status = 429
    code = "rate_limited"
    detail = "Too many AI requests; retry later."


async def chat_caller(
    principal: Annotated[Principal, Guard(AIPerm.CHAT)],
    runtime: RuntimeDep,
    limiter: RateLimiterDep,
) -> Principal:
    """Holds `ai:chat`, and is within `RATE_LIMIT_AI` (counted per user, after the guard)."""
    decision = await limiter.hit(runtime.rate_limit, f"user:{principal.user_id}")
    if not decision.allowed:
        headers = {name.decode(): value.decode() for name, value in decision.headers()}
        raise AIRateLimited(headers=headers)
    return principal


ChatCaller = Annotated[Principal, Depends(chat_caller)]
