"""Refused security actions reach the audit log from the error handler, whichever layer
refused them, in a session of their own (the request's may have been rolled back)."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from fastapi import Request

from ..requests import get_request_meta
from . import service

logger = structlog.get_logger(__name__)


async def audit_refusal(request: Request, action: str, code: str, details: dict[str, Any]) -> None:
    """Record the refusal within the caller's audit budget; never fails the response."""
    app = request.app
    user_id = request.scope.get("state", {}).get("user_id")
    try:
        async with app.state.sessionmaker() as session:
            await service.record_refusal(
                session,
                app.state.rate_limiter,
                await get_request_meta(request),
                action,
                actor_id=uuid.UUID(user_id) if user_id else None,
                subject=f"{request.method} {request.url.path}",
                code=code,
                **details,
            )
    except Exception as error:  # the refusal stands even if it cannot be recorded
        logger.error("audit_refusal_failed", action=action, error=type(error).__name__)
