"""Chat providers behind one small interface: an OpenAI-compatible HTTP API and an offline fake.

The HTTP adapter speaks the wire protocol itself (`POST {AI_BASE_URL}/chat/completions`, JSON or
server-sent events with the usage in the last chunk) on one shared `httpx.AsyncClient`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx
import structlog

from .settings import ChatSettings

logger = structlog.get_logger(__name__)

Role = Literal["system", "user", "assistant"]
MAX_RETRY_AFTER_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class PromptMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    model: str
    messages: tuple[PromptMessage, ...]
    max_tokens: int


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    usage: Usage | None  # None when the provider did not report it


# What a stream yields: content deltas, and the usage once the provider reports it.
StreamPart = str | Usage


class ProviderError(Exception):
    """The provider failed or answered something that is not a chat completion."""

    reason = "error"


class ProviderMalformed(ProviderError):
    reason = "malformed"


class ProviderTimeout(ProviderError):
    reason = "timeout"


class ProviderRateLimited(ProviderError):
    reason = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the provider asks to retry after {retry_after}s")
        self.retry_after = retry_after


class Provider(Protocol):
    async def complete(self, request: CompletionRequest) -> Completion: ...

    def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamPart, None]: ...


class FakeProvider:
    """Deterministic and offline: echoes the last user message word by word, with usage.

    The default in development and tests; production refuses it unless explicitly allowed.
    """

    def _words(self, request: CompletionRequest) -> list[str]:
        last = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        words = ["Echo:", *last.split()][: request.max_tokens]
        return [word + " " for word in words[:-1]] + words[-1:]

    def _usage(self, request: CompletionRequest, words: list[str]) -> Usage:
        prompt_bytes = sum(len(message.content.encode()) for message in request.messages)
        return Usage(prompt_tokens=prompt_bytes // 4 + 1, completion_tokens=len(words))

    async def complete(self, request: CompletionRequest) -> Completion:
        words = self._words(request)
        return Completion("".join(words), self._usage(request, words))

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamPart, None]:
        words = self._words(request)
        for word in words:
            yield word
        yield self._usage(request, words)


def _usage(value: Any) -> Usage | None:
    if value is None:
        return None
    try:
        prompt, completion = int(value["prompt_tokens"]), int(value["completion_tokens"])
    except (KeyError, TypeError, ValueError) as error:
        raise ProviderMalformed("the usage is malformed") from error
    if prompt < 0 or completion < 0:
        raise ProviderMalformed("the usage is negative")
    return Usage(prompt, completion)


def _retry_after(response: httpx.Response) -> int:
    try:
        seconds = int(response.headers.get("retry-after", "1"))
    except ValueError:
        seconds = 1
    return min(max(seconds, 1), MAX_RETRY_AFTER_SECONDS)


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    # The body may echo the request or the key's prefix: log the status only.
    logger.warning("ai_provider_refused", status=response.status_code)
    if response.status_code == 429:
        raise ProviderRateLimited(_retry_after(response))
    raise ProviderError(f"the provider answered {response.status_code}")


async def _sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The `data` of each server-sent event; multi-line data is joined, comments skipped."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield "\n".join(data)


class OpenAICompatibleProvider:
    """`/chat/completions` of any OpenAI-compatible API (OpenAI, vLLM, llama.cpp, Ollama...)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    @staticmethod
    def _payload(request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "stream": stream,
        }
        if stream:
            payload["stream_options"] = {"include_usage": True}
        return payload

    async def complete(self, request: CompletionRequest) -> Completion:
        try:
            response = await self._client.post(
                "chat/completions", json=self._payload(request, stream=False)
            )
        except httpx.TimeoutException as error:
            raise ProviderTimeout("the provider did not answer in time") from error
        except httpx.HTTPError as error:
            raise ProviderError(f"the provider is unreachable ({type(error).__name__})") from error
        _raise_for_status(response)
        try:
            body = response.json()
            text = body["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise ProviderMalformed("the answer is not a chat completion") from error
        if not isinstance(text, str):
            raise ProviderMalformed("the answer has no text content")
        return Completion(text, _usage(body.get("usage")))

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamPart, None]:
        payload = self._payload(request, stream=True)
        try:
            async with self._client.stream("POST", "chat/completions", json=payload) as response:
                if response.status_code >= 400:
                    await response.aread()
                    _raise_for_status(response)
                finished = False
                async for data in _sse_data(response.aiter_lines()):
                    if data == "[DONE]":
                        return
                    for part, done in _stream_parts(data):
                        finished = finished or done
                        if part is not None:
                            yield part
                if not finished:
                    raise ProviderMalformed("the stream ended before the answer did")
        except httpx.TimeoutException as error:
            raise ProviderTimeout("the provider stopped answering in time") from error
        except httpx.HTTPError as error:
            raise ProviderError(f"the provider stream failed ({type(error).__name__})") from error


def _stream_parts(data: str) -> list[tuple[StreamPart | None, bool]]:
    """The deltas and usage of one stream chunk, each with whether it finished the answer."""
    try:
        chunk = json.loads(data)
    except ValueError as error:
        raise ProviderMalformed("a stream chunk is not JSON") from error
    if not isinstance(chunk, dict):
        raise ProviderMalformed("a stream chunk is not an object")
    if "error" in chunk:
        raise ProviderError("the provider reported an error mid-stream")
    parts: list[tuple[StreamPart | None, bool]] = []
    choices = chunk.get("choices") or []
    if not isinstance(choices, list):
        raise ProviderMalformed("the choices of a stream chunk are not a list")
    for choice in choices:
        if not isinstance(choice, dict):
            raise ProviderMalformed("a choice is not an object")
        delta = choice.get("delta") or {}
        content = delta.get("content") if isinstance(delta, dict) else None
        if content is not None and not isinstance(content, str):
            raise ProviderMalformed("a delta's content is not text")
        parts.append((content or None, choice.get("finish_reason") is not None))
    usage = _usage(chunk.get("usage"))
    if usage is not None:
        parts.append((usage, True))
    return parts


@asynccontextmanager
async def open_provider(settings: ChatSettings) -> AsyncIterator[Provider]:
    """The configured provider, with its HTTP client open for the application's lifetime."""
    if settings.ai_provider == "fake":
        yield FakeProvider()
        return
    headers = {"Authorization": f"Bearer {settings.ai_api_key.get_secret_value()}"}
    async with httpx.AsyncClient(
        base_url=settings.ai_base_url + "/",
        headers=headers,
        timeout=httpx.Timeout(settings.ai_timeout_seconds),
        follow_redirects=False,
    ) as client:
        yield OpenAICompatibleProvider(client)
