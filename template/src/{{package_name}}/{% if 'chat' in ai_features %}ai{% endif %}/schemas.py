"""What crosses the HTTP boundary of AI chat."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import Field

from ..schemas import InputModel, OutputModel

MAX_MESSAGE_CHARS = 200_000  # the hard ceiling; AI_MAX_MESSAGE_CHARS is the configured one


class ChatRequest(InputModel):
    """One user turn. There is no `role` and no history: the system prompt is the server's and
    the history comes from the conversation stored on the server."""

    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    conversation_id: uuid.UUID | None = None
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)  # capped at AI_MAX_TOKENS


class DailyUsage(OutputModel):
    day: date
    calls: int
    tokens: int
    cost_micros: int


class UsageOut(OutputModel):
    day: date
    daily_limit: int
    used_tokens: int
    reserved_tokens: int
    remaining_tokens: int
    resets_in_seconds: int
    currency: str
    history: list[DailyUsage]


class TokenUsage(OutputModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool  # the provider did not report it; counted from the text instead


class ChatReply(OutputModel):
    conversation_id: uuid.UUID
    message_id: uuid.UUID
    content: str
    model: str
    usage: TokenUsage


class ConversationCreate(InputModel):
    title: str = Field(default="", max_length=200)


class ConversationOut(OutputModel):
    id: uuid.UUID
    title: str
    created_at: datetime
    updated_at: datetime


class MessageOut(OutputModel):
    id: uuid.UUID
    role: Literal["user", "assistant"]
    content: str
    created_at: datetime


class ConversationDetail(ConversationOut):
    messages: list[MessageOut]


class QuotaUpdate(InputModel):
    daily_tokens: int = Field(ge=0, le=10**12)


class QuotaOut(OutputModel):
    user_id: uuid.UUID
    daily_tokens: int


class AnalyticsRow(OutputModel):
    key: str | None  # a user id, a model or a day; None for erased accounts
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    failures: int
