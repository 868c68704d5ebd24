"""Recording and reading audit events."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..requests import RequestMeta
from .models import AuditEvent


def record(
    session: AsyncSession,
    meta: RequestMeta | None,
    action: str,
    *,
    actor_id: uuid.UUID | None = None,
    subject: str | None = None,
    outcome: str = "success",
    **details: Any,
) -> AuditEvent:
    """Add an event to the caller's transaction: it is stored exactly when the change is."""
    event = AuditEvent(
        action=action,
        outcome=outcome,
        actor_id=actor_id,
        subject=subject,
        client_ip=meta.client_ip if meta else None,
        request_id=meta.request_id if meta else None,
        details=details,
    )
    session.add(event)
    return event


async def page(
    session: AsyncSession,
    *,
    limit: int,
    offset: int,
    action: str | None = None,
    actor_id: uuid.UUID | None = None,
) -> tuple[list[AuditEvent], int]:
    query = select(AuditEvent)
    if action:
        query = query.where(AuditEvent.action == action)
    if actor_id:
        query = query.where(AuditEvent.actor_id == actor_id)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    events = await session.scalars(
        query.order_by(AuditEvent.created_at.desc(), AuditEvent.id).limit(limit).offset(offset)
    )
    return list(events), total or 0
