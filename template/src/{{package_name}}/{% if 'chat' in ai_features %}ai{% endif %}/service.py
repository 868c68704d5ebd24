"""The rules of AI chat: owned conversations, and calls that reserve, stream and settle."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import anyio
import structlog
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..audit import service as audit
from ..database import utcnow
from ..errors import NotFound, ProblemError
from ..requests import RequestMeta
from . import ledger, quota
from .models import ChatMessage, Conversation, LedgerEntry
from .providers import (
    CompletionRequest,
    PromptMessage,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    StreamPart,
    Usage,
)
from .runtime import ChatRuntime
from .safety import StreamFilter, clean_input, looks_like_injection
from .schemas import (
    ChatReply,
    ChatRequest,
    ConversationDetail,
    MessageOut,
    TokenUsage,
)

logger = structlog.get_logger(__name__)

TITLE_CHARS = 80
SETTLE_SECONDS = 10.0  # a settlement that takes longer is left to the stale-reservation sweep


class ConversationNotFound(NotFound):
    code = "ai_conversation_not_found"
    detail = "The conversation does not exist."


class InvalidMessage(ProblemError):
    status = 422
    code = "ai_invalid_message"
    detail = "The message is empty or too long."


class PromptRejected(ProblemError):
    status = 422
    code = "ai_prompt_rejected"
    detail = "The message looks like a prompt-injection attempt and was not sent."


class UpstreamFailed(ProblemError):
    status = 502
    code = "ai_upstream_error"
    detail = "The AI provider failed or gave an unusable answer."


class UpstreamTimeout(ProblemError):
    status = 504
    code = "ai_upstream_timeout"
    detail = "The AI provider did not answer in time."


class UpstreamRateLimited(ProblemError):
    status = 503
    code = "ai_upstream_rate_limited"
    detail = "The AI provider is rate-limiting this service; retry later."

    def __init__(self, retry_after: int) -> None:
        super().__init__(headers={"Retry-After": str(retry_after)})


def upstream_problem(error: ProviderError) -> ProblemError:
    if isinstance(error, ProviderTimeout):
        return UpstreamTimeout()
    if isinstance(error, ProviderRateLimited):
        return UpstreamRateLimited(error.retry_after)
    return UpstreamFailed()


# ---------------------------------------------------------------------------- conversations
async def create_conversation(
    session: AsyncSession, user_id: uuid.UUID, title: str
) -> Conversation:
    conversation = Conversation(user_id=user_id, title=title)
    session.add(conversation)
    await session.commit()
    return conversation


async def page_conversations(
    session: AsyncSession, user_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[Conversation], int]:
    mine = select(Conversation).where(Conversation.user_id == user_id)
    total = await session.scalar(select(func.count()).select_from(mine.subquery()))
    rows = await session.scalars(
        mine.order_by(Conversation.updated_at.desc(), Conversation.id).limit(limit).offset(offset)
    )
    return list(rows), total or 0


async def owned_conversation(
    session: AsyncSession, user_id: uuid.UUID, conversation_id: uuid.UUID
) -> Conversation:
    """The caller's conversation; anyone else's, an admin's included, does not exist (404)."""
    conversation = await session.scalar(
        select(Conversation).where(
            Conversation.id == conversation_id, Conversation.user_id == user_id
        )
    )
    if conversation is None:
        raise ConversationNotFound()
    return conversation


async def conversation_detail(
    session: AsyncSession, user_id: uuid.UUID, conversation_id: uuid.UUID
) -> ConversationDetail:
    conversation = await owned_conversation(session, user_id, conversation_id)
    messages = await session.scalars(
        select(ChatMessage)
        .where(ChatMessage.conversation_id == conversation.id)
        .order_by(ChatMessage.created_at, ChatMessage.role.desc())
    )
    return ConversationDetail(
        id=conversation.id,
        title=conversation.title,
        created_at=conversation.created_at,
        updated_at=conversation.updated_at,
        messages=[MessageOut.model_validate(message) for message in messages],
    )


async def delete_conversation(
    session: AsyncSession, user_id: uuid.UUID, conversation_id: uuid.UUID
) -> None:
    conversation = await owned_conversation(session, user_id, conversation_id)
    await session.execute(delete(Conversation).where(Conversation.id == conversation.id))
    await session.commit()


async def _history(
    session: AsyncSession, conversation_id: uuid.UUID, count: int
) -> list[PromptMessage]:
    """The last `count` messages, oldest first, cleaned like new input."""
    if count == 0:
        return []
    rows = (
        await session.execute(
            select(ChatMessage.role, ChatMessage.content)
            .where(ChatMessage.conversation_id == conversation_id)
            .order_by(ChatMessage.created_at.desc(), ChatMessage.role)
            .limit(count)
        )
    ).all()
    return [
        PromptMessage("assistant" if role == "assistant" else "user", clean_input(content))
        for role, content in reversed(rows)
    ]


# ------------------------------------------------------------------------------------ calls
async def start_chat(
    session: AsyncSession,
    runtime: ChatRuntime,
    meta: RequestMeta,
    user_id: uuid.UUID,
    body: ChatRequest,
) -> ChatCall:
    """Every check that can refuse the chat, then the reservation: nothing is sent yet.

    The request's session is committed before the reservation, so no pooled connection is
    held while the provider answers.
    """
    settings = runtime.settings
    text = clean_input(body.message)
    if not text.strip() or len(text) > settings.ai_max_message_chars:
        raise InvalidMessage()
    flagged = settings.ai_screening != "off" and looks_like_injection(text)
    if flagged:
        audit.record(
            session,
            meta,
            "ai.prompt_flagged",
            outcome="failure" if settings.ai_screening == "block" else "success",
            actor_id=user_id,
            subject=str(body.conversation_id) if body.conversation_id else None,
            mode=settings.ai_screening,
        )
        if settings.ai_screening == "block":
            runtime.metrics.refusals.labels(PromptRejected.code).inc()
            await session.commit()
            raise PromptRejected()
    history: list[PromptMessage] = []
    if body.conversation_id is not None:
        conversation = await owned_conversation(session, user_id, body.conversation_id)
        history = await _history(session, conversation.id, settings.ai_history_messages)
    prompt = (
        PromptMessage("system", settings.ai_system_prompt),
        *history,
        PromptMessage("user", text),
    )
    max_tokens = min(body.max_tokens or settings.ai_max_tokens, settings.ai_max_tokens)
    prompt_estimate = quota.estimate_prompt_tokens(prompt)
    user_max = await quota.user_limit(session, user_id, settings.ai_daily_tokens_per_user)
    await session.commit()

    await runtime.sweep()
    conversation_id = body.conversation_id or uuid.uuid4()
    async with runtime.sessionmaker() as writer:
        try:
            reservation = await quota.reserve(
                writer,
                user_id=user_id,
                tokens=prompt_estimate + max_tokens,
                user_max=user_max,
                budget=settings.ai_daily_budget,
                now=utcnow(),
            )
        except ProblemError as refusal:
            runtime.metrics.refusals.labels(refusal.code).inc()
            raise
        if body.conversation_id is None:
            writer.add(Conversation(id=conversation_id, user_id=user_id, title=text[:TITLE_CHARS]))
            await (
                writer.flush()
            )  # before the rows that reference it (no ORM relationship orders them)
        else:
            await writer.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id)
                .values(updated_at=utcnow())
            )
        writer.add(
            ChatMessage(conversation_id=conversation_id, role="user", content=text, flagged=flagged)
        )
        writer.add(
            LedgerEntry(
                id=reservation.id,
                user_id=user_id,
                conversation_id=conversation_id,
                day=reservation.day,
                model=settings.ai_model,
                outcome=quota.RESERVED,
                reserved_tokens=reservation.tokens,
            )
        )
        await writer.commit()
    runtime.call_started()
    return ChatCall(
        runtime,
        reservation,
        conversation_id,
        CompletionRequest(settings.ai_model, prompt, max_tokens),
        prompt_estimate,
    )


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class ChatCall:
    """One provider call holding one reservation, which it settles exactly once."""

    def __init__(
        self,
        runtime: ChatRuntime,
        reservation: quota.Reservation,
        conversation_id: uuid.UUID,
        request: CompletionRequest,
        prompt_estimate: int,
    ) -> None:
        self.runtime = runtime
        self.reservation = reservation
        self.conversation_id = conversation_id
        self.request = request
        self.prompt_estimate = prompt_estimate
        self.settled = False
        self._started = anyio.current_time()
        self._deadline = self._started + runtime.settings.ai_max_call_seconds
        self._upstream: AsyncGenerator[StreamPart, None] | None = None

    # ---------------------------------------------------------------- JSON
    async def complete(self) -> ChatReply:
        try:
            with anyio.fail_after(self.runtime.settings.ai_max_call_seconds):
                completion = await self.runtime.provider.complete(self.request)
        except TimeoutError:
            raise await self._failed(ProviderTimeout("the call ran out of time")) from None
        except ProviderError as error:
            raise await self._failed(error) from error
        except BaseException:  # cancelled: the client went away, or the server is stopping
            await self.close()
            raise
        content = self.runtime.links.sanitize(completion.text)
        return await self._reply(completion.usage, content)

    async def _reply(self, usage: Usage | None, content: str) -> ChatReply:
        message_id, charged = await self.finish("success", usage, content)
        return ChatReply(
            conversation_id=self.conversation_id,
            message_id=message_id or uuid.uuid4(),
            content=content,
            model=self.request.model,
            usage=charged,
        )

    # -------------------------------------------------------------- stream
    async def open_stream(self) -> AsyncGenerator[bytes, None]:
        """Start the provider's stream and wait for its first part, so a provider that fails
        at once still gets an HTTP status; the events follow."""
        self._upstream = self.runtime.provider.stream(self.request)
        try:
            first = await self._next()
        except ProviderError as error:
            await self.close_upstream()
            raise await self._failed(error) from error
        except BaseException:
            await self.close()
            raise
        return self._events(first)

    async def _next(self) -> StreamPart | None:
        assert self._upstream is not None
        try:
            with anyio.fail_after(max(self._deadline - anyio.current_time(), 0)):
                return await anext(self._upstream)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise ProviderTimeout("the call ran out of time") from None

    async def _events(self, part: StreamPart | None) -> AsyncGenerator[bytes, None]:
        output = StreamFilter(self.runtime.links)
        sent: list[str] = []
        usage: Usage | None = None
        try:
            while part is not None:
                if isinstance(part, Usage):
                    usage = part
                elif safe := output.feed(part):
                    sent.append(safe)
                    yield _sse("delta", {"content": safe})
                part = await self._next()
            if tail := output.flush():
                sent.append(tail)
                yield _sse("delta", {"content": tail})
            reply = await self._reply(usage, "".join(sent))
            yield _sse("done", reply.model_dump(mode="json", exclude={"content"}))
        except ProviderError as error:
            problem = await self._failed(error, "".join(sent))
            yield _sse("error", {"code": problem.code, "detail": problem.detail})
        finally:
            await self.close(partial="".join(sent))

    async def close_upstream(self) -> None:
        """Stop the provider's stream; its HTTP request is closed, so the provider stops too."""
        if self._upstream is not None:
            upstream, self._upstream = self._upstream, None
            with anyio.CancelScope(shield=True), anyio.move_on_after(SETTLE_SECONDS):
                await upstream.aclose()

    async def close(self, partial: str = "") -> None:
        """However the call ends (a client gone, a server stopping), it ends once."""
        await self.close_upstream()
        if not self.settled:
            await self.finish("cancelled", None, partial)

    # ---------------------------------------------------------- settlement
    async def _failed(self, error: ProviderError, partial: str = "") -> ProblemError:
        self.runtime.metrics.errors.labels(self.request.model, error.reason).inc()
        logger.warning("ai_upstream_failed", reason=error.reason, error=str(error))
        outcome = {"timeout": "timeout", "rate_limited": "rate_limited"}.get(
            error.reason, "upstream_error"
        )
        await self.finish(outcome, None, partial)
        return upstream_problem(error)

    async def finish(
        self, outcome: str, usage: Usage | None, content: str
    ) -> tuple[uuid.UUID | None, TokenUsage]:
        """Settle the reservation with the real usage, or an estimate when the provider gave
        none for text it did produce; store the answer of a successful call."""
        estimated = usage is None and bool(content)
        if usage is None:
            completion = quota.estimate_text_tokens(content)
            usage = Usage(self.prompt_estimate if content else 0, completion)
        charged = TokenUsage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            estimated=estimated,
        )
        if self.settled:
            return None, charged
        self.settled = True
        settings = self.runtime.settings
        model = self.request.model
        cost = ledger.cost_micros(
            settings.ai_prices, model, usage.prompt_tokens, usage.completion_tokens
        )
        message_id: uuid.UUID | None = None
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(SETTLE_SECONDS):
                async with self.runtime.sessionmaker() as session:
                    charge = quota.Charge(
                        outcome,
                        usage.prompt_tokens,
                        usage.completion_tokens,
                        cost,
                        estimated,
                    )
                    if await quota.settle(session, self.reservation, charge):
                        message_id = await self._store_answer(session, outcome, content)
                    await session.commit()
        except Exception as error:  # the sweep releases what could not be settled
            logger.error("ai_settlement_failed", error=type(error).__name__)
        finally:
            self.runtime.call_ended()
        metrics = self.runtime.metrics
        metrics.latency.labels(model).observe(anyio.current_time() - self._started)
        metrics.tokens.labels(model, "prompt").inc(usage.prompt_tokens)
        metrics.tokens.labels(model, "completion").inc(usage.completion_tokens)
        metrics.cost.labels(model).inc(cost)
        return message_id, charged

    async def _store_answer(
        self, session: AsyncSession, outcome: str, content: str
    ) -> uuid.UUID | None:
        if outcome != "success":
            return None
        exists = await session.scalar(
            select(Conversation.id).where(Conversation.id == self.conversation_id)
        )
        if exists is None:  # deleted while the provider answered
            return None
        message = ChatMessage(
            id=uuid.uuid4(),
            conversation_id=self.conversation_id,
            role="assistant",
            content=content,
        )
        session.add(message)
        return message.id
