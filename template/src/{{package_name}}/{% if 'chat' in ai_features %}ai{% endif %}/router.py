"""AI endpoints: chat (JSON or server-sent events), owned conversations, usage and admin views."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy import delete

from ..audit import service as audit
from ..auth.dependencies import Principal
from ..database import SessionDep, utcnow
from ..errors import ProblemError
from ..paths import API_PREFIX
from ..rbac.dependencies import Guard
from ..rbac.routing import GuardedRoute
from ..requests import RequestMetaDep
from ..schemas import Page, PageParams, page_params
from ..users import service as users_service
from . import ledger, quota, service
from .dependencies import ChatCaller, RuntimeDep
from .models import QuotaOverride
from .permissions import AIPerm
from .schemas import (
    AnalyticsRow,
    ChatReply,
    ChatRequest,
    ConversationCreate,
    ConversationDetail,
    ConversationOut,
    QuotaOut,
    QuotaUpdate,
    UsageOut,
)
from .streaming import ChatEventStream

router = APIRouter(prefix=f"{API_PREFIX}/ai", tags=["ai"], route_class=GuardedRoute)

PageDep = Annotated[PageParams, Depends(page_params)]
ChatUser = Annotated[Principal, Guard(AIPerm.CHAT)]
USAGE_HISTORY_DAYS = 30
MAX_ANALYTICS_DAYS = 366


# nginx's "client closed request": nobody reads it, the access log does.
CLIENT_GONE = 499


async def _complete_unless_gone(request: Request, call: service.ChatCall) -> ChatReply | None:
    """The JSON answer, or None when the client disconnected first (which cancels the call)."""
    outcome: ChatReply | ProblemError | None = None
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        async def answer() -> None:
            nonlocal outcome
            try:
                outcome = await call.complete()
            except ProblemError as error:
                outcome = error
            group.cancel_scope.cancel()

        group.start_soon(watch)
        group.start_soon(answer)
    if isinstance(outcome, ProblemError):
        raise outcome
    return outcome


@router.post(
    "/chat",
    response_model=ChatReply,
    responses={
        200: {"content": {"text/event-stream": {}}},
        429: {"description": "Rate limit, daily quota or global budget exhausted"},
        502: {"description": "The provider failed or answered nonsense"},
        503: {"description": "The provider is rate-limiting this service"},
        504: {"description": "The provider did not answer in time"},
    },
)
async def chat(
    body: ChatRequest,
    request: Request,
    principal: ChatCaller,
    session: SessionDep,
    runtime: RuntimeDep,
    meta: RequestMetaDep,
) -> ChatReply | Response:
    """Send one message. `"stream": true` (or `Accept: text/event-stream`) answers with
    server-sent events: `delta` events with content, then one `done` event with the message
    id and the usage (or one `error` event if the provider fails mid-answer)."""
    call = await service.start_chat(session, runtime, meta, principal.user_id, body)
    if body.stream or "text/event-stream" in request.headers.get("accept", ""):
        return ChatEventStream(call, await call.open_stream())
    reply = await _complete_unless_gone(request, call)
    return Response(status_code=CLIENT_GONE) if reply is None else reply


@router.get("/conversations", response_model=Page[ConversationOut])
async def list_conversations(
    principal: ChatUser, session: SessionDep, params: Annotated[PageParams, Depends(page_params)]
) -> Page[ConversationOut]:
    items, total = await service.page_conversations(
        session, principal.user_id, limit=params.limit, offset=params.offset
    )
    return Page(
        items=[ConversationOut.model_validate(item) for item in items],
        total=total,
        limit=params.limit,
        offset=params.offset,
    )


@router.post("/conversations", response_model=ConversationOut, status_code=status.HTTP_201_CREATED)
async def create_conversation(
    body: ConversationCreate, principal: ChatUser, session: SessionDep
) -> ConversationOut:
    conversation = await service.create_conversation(session, principal.user_id, body.title)
    return ConversationOut.model_validate(conversation)


@router.get("/conversations/{conversation_id}", response_model=ConversationDetail)
async def read_conversation(
    conversation_id: uuid.UUID, principal: ChatUser, session: SessionDep
) -> ConversationDetail:
    """The caller's own conversation with its messages; nobody else's, whatever their role."""
    return await service.conversation_detail(session, principal.user_id, conversation_id)


@router.delete("/conversations/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_conversation(
    conversation_id: uuid.UUID, principal: ChatUser, session: SessionDep
) -> None:
    await service.delete_conversation(session, principal.user_id, conversation_id)


@router.get("/usage", response_model=UsageOut)
async def read_usage(
    principal: Annotated[Principal, Guard(AIPerm.USAGE_READ)],
    session: SessionDep,
    runtime: RuntimeDep,
) -> UsageOut:
    """Your tokens today, what remains of your daily quota, and your last 30 days."""
    settings = runtime.settings
    limit = await quota.user_limit(session, principal.user_id, settings.ai_daily_tokens_per_user)
    return await ledger.usage_of(
        session,
        principal.user_id,
        limit=limit,
        currency=settings.ai_currency,
        now=utcnow(),
        days=USAGE_HISTORY_DAYS,
    )


@router.get("/analytics", response_model=Page[AnalyticsRow])
async def read_analytics(
    _: Annotated[Principal, Guard(AIPerm.ANALYTICS_READ)],
    session: SessionDep,
    params: PageDep,
    group_by: ledger.GroupBy = "day",
    since: date | None = None,
    until: date | None = None,
) -> Page[AnalyticsRow]:
    """Calls, tokens, cost and failures by user, model or day (default: the last 30 days).
    Aggregates only: no message content."""
    until = until or quota.quota_day(utcnow())
    since = since or until - timedelta(days=min(USAGE_HISTORY_DAYS - 1, (until - date.min).days))
    if since > until or (until - since).days >= MAX_ANALYTICS_DAYS:
        raise InvalidPeriod()
    rows, total = await ledger.analytics(
        session,
        group_by=group_by,
        since=since,
        until=until,
        limit=params.limit,
        offset=params.offset,
    )
    return Page(items=rows, total=total, limit=params.limit, offset=params.offset)


class InvalidPeriod(ProblemError):
    status = 422
    code = "invalid_period"
    detail = f"`since` must not be after `until`, and the period at most {MAX_ANALYTICS_DAYS} days."


@router.put("/quotas/{user_id}", response_model=QuotaOut)
async def set_quota(
    user_id: uuid.UUID,
    body: QuotaUpdate,
    principal: Annotated[Principal, Guard(AIPerm.QUOTAS_WRITE)],
    session: SessionDep,
    meta: RequestMetaDep,
) -> QuotaOut:
    """Give one user their own daily token quota instead of `AI_DAILY_TOKENS_PER_USER`."""
    await users_service.get(session, user_id)
    override = await session.get(QuotaOverride, user_id)
    if override is None:
        override = QuotaOverride(user_id=user_id, daily_tokens=body.daily_tokens)
        session.add(override)
    override.daily_tokens = body.daily_tokens
    override.updated_by = principal.user_id
    audit.record(
        session,
        meta,
        "ai.quota_changed",
        actor_id=principal.user_id,
        subject=str(user_id),
        daily_tokens=body.daily_tokens,
    )
    await session.commit()
    return QuotaOut(user_id=user_id, daily_tokens=body.daily_tokens)


@router.delete("/quotas/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def reset_quota(
    user_id: uuid.UUID,
    principal: Annotated[Principal, Guard(AIPerm.QUOTAS_WRITE)],
    session: SessionDep,
    meta: RequestMetaDep,
) -> None:
    """Return one user to the default daily quota."""
    await users_service.get(session, user_id)
    await session.execute(delete(QuotaOverride).where(QuotaOverride.user_id == user_id))
    audit.record(session, meta, "ai.quota_reset", actor_id=principal.user_id, subject=str(user_id))
    await session.commit()
