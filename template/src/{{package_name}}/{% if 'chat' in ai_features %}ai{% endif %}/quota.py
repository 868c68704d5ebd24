"""Token quotas: reserve an upper bound before a call, settle the real usage after, exactly once.

A reservation is one conditional UPDATE per counter (the user's day, then the global day) that
only matches while `used + reserved + n <= limit`, so concurrent calls can never overdraw, on
any database. The ledger row written with it is the reservation's record: settling flips its
`outcome` from `reserved` with another conditional UPDATE, so whoever flips it (the call, or the
sweep that recovers calls of a crashed process) is the only one to move the counters.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..database import utcnow
from ..errors import TooManyRequests
from .models import BudgetDay, LedgerEntry, QuotaOverride, UsageDay
from .providers import PromptMessage

RESERVED = "reserved"
# Chat formats wrap each message in a few tokens; these bounds are generous.
TOKENS_PER_MESSAGE = 8
TOKENS_PER_REPLY = 8


class QuotaExhausted(TooManyRequests):
    code = "ai_quota_exhausted"
    detail = "Your daily AI token quota is used up; it resets at midnight UTC."


class BudgetExhausted(TooManyRequests):
    code = "ai_budget_exhausted"
    detail = "The service's daily AI budget is used up; it resets at midnight UTC."


def estimate_prompt_tokens(messages: Sequence[PromptMessage]) -> int:
    """An upper bound on the prompt's tokens without a tokenizer: byte-level BPE and
    SentencePiece with byte fallback never make more tokens than the text has UTF-8 bytes."""
    return sum(len(m.content.encode()) + TOKENS_PER_MESSAGE for m in messages) + TOKENS_PER_REPLY


def estimate_text_tokens(text: str) -> int:
    return len(text.encode())


def quota_day(now: datetime) -> date:
    return now.astimezone(UTC).date()


def seconds_until_reset(now: datetime) -> int:
    tomorrow = datetime.combine(quota_day(now) + timedelta(days=1), time(), tzinfo=UTC)
    return max(1, int((tomorrow - now).total_seconds()) + 1)


@dataclass(frozen=True, slots=True)
class Reservation:
    id: uuid.UUID
    user_id: uuid.UUID
    day: date
    tokens: int


@dataclass(frozen=True, slots=True)
class Charge:
    """How a reservation ends: the outcome and the usage it is charged (never above it)."""

    outcome: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_micros: int = 0
    estimated: bool = False


def _matched(result: Any) -> int:
    count: int = result.rowcount
    return count


async def user_limit(session: AsyncSession, user_id: uuid.UUID, default: int) -> int:
    override = await session.scalar(
        select(QuotaOverride.daily_tokens).where(QuotaOverride.user_id == user_id)
    )
    return default if override is None else override


def _fits(table: type[UsageDay] | type[BudgetDay], tokens: int, limit: int) -> ColumnElement[bool]:
    return table.used + table.reserved + tokens <= limit


async def _claim(
    session: AsyncSession, reservation: Reservation, user_max: int, budget: int
) -> str:
    """Both conditional UPDATEs in the caller's transaction; the counter that refused, or ""."""
    mine = await session.execute(
        update(UsageDay)
        .where(
            UsageDay.user_id == reservation.user_id,
            UsageDay.day == reservation.day,
            _fits(UsageDay, reservation.tokens, user_max),
        )
        .values(reserved=UsageDay.reserved + reservation.tokens)
    )
    if _matched(mine) != 1:
        return "user"
    everyone = await session.execute(
        update(BudgetDay)
        .where(BudgetDay.day == reservation.day, _fits(BudgetDay, reservation.tokens, budget))
        .values(reserved=BudgetDay.reserved + reservation.tokens)
    )
    return "" if _matched(everyone) == 1 else "budget"


async def _create_day_rows(session: AsyncSession, reservation: Reservation) -> None:
    """The day's counter rows, each in its own transaction; a concurrent creator may win."""
    rows: list[tuple[Any, dict[str, Any]]] = [
        (UsageDay, {"user_id": reservation.user_id, "day": reservation.day}),
        (BudgetDay, {"day": reservation.day}),
    ]
    for table, key in rows:
        try:
            await session.execute(insert(table).values(**key, used=0, reserved=0))
            await session.commit()
        except IntegrityError:
            await session.rollback()


async def reserve(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    tokens: int,
    user_max: int,
    budget: int,
    now: datetime,
) -> Reservation:
    """Hold `tokens` of the user's and the global day in the session's transaction.

    Call it first in a fresh transaction: when a day's row is missing it commits the row's
    creation and tries again. The caller adds its rows and commits; a rollback undoes it all.
    """
    reservation = Reservation(uuid.uuid4(), user_id, quota_day(now), tokens)
    refused = await _claim(session, reservation, user_max, budget)
    if refused:
        await session.rollback()
        await _create_day_rows(session, reservation)
        refused = await _claim(session, reservation, user_max, budget)
    if refused:
        await session.rollback()
        error = QuotaExhausted if refused == "user" else BudgetExhausted
        raise error(seconds_until_reset(now))
    return reservation


async def settle(session: AsyncSession, reservation: Reservation, charge: Charge) -> bool:
    """End `reservation` in the session's transaction: record the charge on its ledger row,
    return the unused tokens. False (and nothing changed) when it has already ended."""
    charged = min(charge.prompt_tokens + charge.completion_tokens, reservation.tokens)
    claimed = await session.execute(
        update(LedgerEntry)
        .where(LedgerEntry.id == reservation.id, LedgerEntry.outcome == RESERVED)
        .values(
            outcome=charge.outcome,
            prompt_tokens=charge.prompt_tokens,
            completion_tokens=charge.completion_tokens,
            charged_tokens=charged,
            cost_micros=charge.cost_micros,
            usage_estimated=charge.estimated,
            settled_at=utcnow(),
        )
    )
    if _matched(claimed) != 1:
        return False
    for table, where in (
        (UsageDay, (UsageDay.user_id == reservation.user_id, UsageDay.day == reservation.day)),
        (BudgetDay, (BudgetDay.day == reservation.day,)),
    ):
        await session.execute(
            update(table)
            .where(*where)
            .values(used=table.used + charged, reserved=table.reserved - reservation.tokens)
        )
    return True


async def release_stale(
    sessionmaker: async_sessionmaker[AsyncSession], older_than: datetime, batch: int = 200
) -> int:
    """Release reservations whose call no process is still making (a crash, a kill -9).

    Nothing is charged: the usage is unknown. Safe to run on every instance at once.
    """
    released = 0
    async with sessionmaker() as session:
        stale = (
            await session.execute(
                select(
                    LedgerEntry.id,
                    LedgerEntry.user_id,
                    LedgerEntry.day,
                    LedgerEntry.reserved_tokens,
                )
                .where(LedgerEntry.outcome == RESERVED, LedgerEntry.created_at < older_than)
                .order_by(LedgerEntry.created_at)
                .limit(batch)
            )
        ).all()
        await session.rollback()
        for row in stale:
            if row.user_id is None:  # the account is gone, and its counters with it
                reservation = Reservation(row.id, uuid.UUID(int=0), row.day, row.reserved_tokens)
            else:
                reservation = Reservation(row.id, row.user_id, row.day, row.reserved_tokens)
            if await settle(session, reservation, Charge("abandoned", estimated=True)):
                released += 1
            await session.commit()
    return released
