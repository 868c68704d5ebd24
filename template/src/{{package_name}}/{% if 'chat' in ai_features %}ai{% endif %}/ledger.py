"""The usage ledger read back: prices, a user's own usage, and aggregate analytics for admins."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import LedgerEntry, UsageDay
from .quota import RESERVED, quota_day, seconds_until_reset
from .schemas import AnalyticsRow, DailyUsage, UsageOut
from .settings import Price

MICROS_PER_MILLION_TOKENS = 1_000_000
GroupBy = Literal["user", "model", "day"]


def cost_micros(prices: Mapping[str, Price], model: str, prompt: int, completion: int) -> int:
    """Integer micro-units, rounded up; an unpriced model costs nothing (it is still counted)."""
    price = prices.get(model)
    if price is None:
        return 0
    total = prompt * price.input + completion * price.output
    return -(-total // MICROS_PER_MILLION_TOKENS)


async def usage_of(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    limit: int,
    currency: str,
    now: datetime,
    days: int,
) -> UsageOut:
    today = quota_day(now)
    counters = await session.get(UsageDay, (user_id, today))
    used, reserved = (counters.used, counters.reserved) if counters else (0, 0)
    rows = (
        await session.execute(
            select(
                LedgerEntry.day,
                func.count(),
                func.coalesce(func.sum(LedgerEntry.charged_tokens), 0),
                func.coalesce(func.sum(LedgerEntry.cost_micros), 0),
            )
            .where(
                LedgerEntry.user_id == user_id,
                LedgerEntry.day > today - timedelta(days=days),
                LedgerEntry.outcome != RESERVED,
            )
            .group_by(LedgerEntry.day)
            .order_by(LedgerEntry.day.desc())
        )
    ).all()
    return UsageOut(
        day=today,
        daily_limit=limit,
        used_tokens=used,
        reserved_tokens=reserved,
        remaining_tokens=max(limit - used - reserved, 0),
        resets_in_seconds=seconds_until_reset(now),
        currency=currency,
        history=[
            DailyUsage(day=day, calls=calls, tokens=int(tokens), cost_micros=int(cost))
            for day, calls, tokens, cost in rows
        ],
    )


async def analytics(
    session: AsyncSession,
    *,
    group_by: GroupBy,
    since: date,
    until: date,
    limit: int,
    offset: int,
) -> tuple[list[AnalyticsRow], int]:
    """Calls, tokens, cost and failures per user, model or day; never message content."""
    key: Any = {
        "user": LedgerEntry.user_id,
        "model": LedgerEntry.model,
        "day": LedgerEntry.day,
    }[group_by]
    grouped = (
        select(
            key.label("key"),
            func.count().label("calls"),
            func.coalesce(func.sum(LedgerEntry.prompt_tokens), 0).label("prompt_tokens"),
            func.coalesce(func.sum(LedgerEntry.completion_tokens), 0).label("completion_tokens"),
            func.coalesce(func.sum(LedgerEntry.cost_micros), 0).label("cost_micros"),
            func.sum(case((LedgerEntry.outcome != "success", 1), else_=0)).label("failures"),
        )
        .where(LedgerEntry.day >= since, LedgerEntry.day <= until, LedgerEntry.outcome != RESERVED)
        .group_by(key)
    )
    total = await session.scalar(select(func.count()).select_from(grouped.subquery()))
    rows = (await session.execute(grouped.order_by(key).limit(limit).offset(offset))).all()
    return [
        AnalyticsRow(
            key=None if row.key is None else str(row.key),
            calls=row.calls,
            prompt_tokens=int(row.prompt_tokens),
            completion_tokens=int(row.completion_tokens),
            cost_micros=int(row.cost_micros),
            failures=int(row.failures or 0),
        )
        for row in rows
    ], total or 0
