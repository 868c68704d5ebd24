"""Recording and reading audit events: every stored field is bounded, refusals are budgeted,
and a deleted account's personal data is pseudonymised."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..requests import RequestMeta
from .models import REQUEST_ID_MAX_LENGTH, SUBJECT_MAX_LENGTH, AuditEvent

if TYPE_CHECKING:
    from ..ratelimit import RateLimiter

logger = structlog.get_logger(__name__)

# What one event may store, whatever a caller passes: an attacker-controlled path, role name
# or header can never make a row larger than this.
DETAIL_TEXT_MAX = 200
DETAIL_ITEMS_MAX = 20
DETAILS_JSON_MAX = 2_000


def _clip(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def _bounded(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return _clip(value, DETAIL_TEXT_MAX)
    if isinstance(value, dict) and depth < 2:
        items = list(value.items())[:DETAIL_ITEMS_MAX]
        return {_clip(str(key), 64): _bounded(item, depth + 1) for key, item in items}
    if isinstance(value, list | tuple | set | frozenset) and depth < 2:
        return [_bounded(item, depth + 1) for item in list(value)[:DETAIL_ITEMS_MAX]]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _clip(str(value), DETAIL_TEXT_MAX)


def bounded_details(details: dict[str, Any]) -> dict[str, Any]:
    bounded: dict[str, Any] = _bounded(details)
    if len(json.dumps(bounded, default=str)) > DETAILS_JSON_MAX:
        return {"truncated": True}
    return bounded


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
        subject=_clip(subject, SUBJECT_MAX_LENGTH),
        client_ip=meta.client_ip if meta else None,
        request_id=_clip(meta.request_id, REQUEST_ID_MAX_LENGTH) if meta else None,
        client_request_id=_clip(meta.client_request_id, REQUEST_ID_MAX_LENGTH) if meta else None,
        details=bounded_details(details),
    )
    session.add(event)
    return event


async def record_refusal(
    session: AsyncSession,
    limiter: RateLimiter,
    meta: RequestMeta,
    action: str,
    *,
    actor_id: uuid.UUID | None = None,
    subject: str | None = None,
    **details: Any,
) -> None:
    """Audit a refused security action and commit it, within the caller's budget
    (`RATE_LIMIT_AUDIT_DENIALS` per user, or per client when anonymous): past the budget the
    refusal is only logged, so nobody can flood the table by being refused."""
    key = f"user:{actor_id}" if actor_id else f"ip:{meta.client_ip}"
    if not await limiter.within_budget(limiter.audit_denials, key):
        logger.warning("audit_refusal_over_budget", action=action, actor_id=str(actor_id))
        return
    record(session, meta, action, actor_id=actor_id, subject=subject, outcome="failure", **details)
    await session.commit()


async def pseudonymise(session: AsyncSession, user_id: uuid.UUID, email: str) -> None:
    """Before an account is erased, strip its personal data from the log: its events keep
    action, time and outcome under the account's (now meaningless) id, without addresses,
    request ids, email or details; events others recorded about it lose their details (a
    name an admin set, say) but keep who did them. Run before the user row goes."""
    await session.execute(
        update(AuditEvent)
        .where(or_(AuditEvent.actor_id == user_id, AuditEvent.subject == email))
        .values(subject=str(user_id), client_ip=None, client_request_id=None, details={})
    )
    await session.execute(
        update(AuditEvent).where(AuditEvent.subject == str(user_id)).values(details={})
    )


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
