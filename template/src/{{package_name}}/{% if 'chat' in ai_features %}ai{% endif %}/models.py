"""Conversations and their messages, daily token counters, quota overrides and the usage ledger."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    Text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column

from ..database import Base, UTCDateTime, utcnow

MODEL_NAME_LENGTH = 100


class Conversation(Base):
    __tablename__ = "ai_conversations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class ChatMessage(Base):
    __tablename__ = "ai_messages"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ai_conversations.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))  # "user" or "assistant", never "system"
    # MEDIUMTEXT on MySQL/MariaDB: TEXT stops at 64 KiB.
    content: Mapped[str] = mapped_column(
        Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
    )
    flagged: Mapped[bool] = mapped_column(default=False)  # screening found an injection pattern
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UsageDay(Base):
    """One user's tokens on one UTC day: `used` is settled, `reserved` is held by calls in
    flight. A reservation is one conditional UPDATE that keeps `used + reserved <= limit`."""

    __tablename__ = "ai_usage_days"
    __table_args__ = (
        CheckConstraint("used >= 0", name="used_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)


class BudgetDay(Base):
    """Every user's tokens on one UTC day, against the global daily budget."""

    __tablename__ = "ai_budget_days"
    __table_args__ = (
        CheckConstraint("used >= 0", name="used_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)


class QuotaOverride(Base):
    """An admin's per-user daily token quota, in place of `AI_DAILY_TOKENS_PER_USER`."""

    __tablename__ = "ai_quota_overrides"
    __table_args__ = (CheckConstraint("daily_tokens >= 0", name="daily_tokens_not_negative"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    daily_tokens: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )


class LedgerEntry(Base):
    """One provider call: written as `reserved` before the call, settled exactly once after.

    Rows outlive their user and conversation (the links become NULL): spending stays auditable
    after an account is erased.
    """

    __tablename__ = "ai_ledger"
    __table_args__ = (
        Index("ix_ai_ledger_outcome_created_at", "outcome", "created_at"),
        CheckConstraint("reserved_tokens >= 0", name="reserved_tokens_not_negative"),
        CheckConstraint("charged_tokens <= reserved_tokens", name="charged_within_reserved"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ai_conversations.id", ondelete="SET NULL")
    )
    day: Mapped[date] = mapped_column(Date, index=True)  # the quota day it was reserved on
    model: Mapped[str] = mapped_column(String(MODEL_NAME_LENGTH))
    outcome: Mapped[str] = mapped_column(String(16))
    reserved_tokens: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    charged_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    usage_estimated: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
