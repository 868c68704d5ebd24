"""Text to vectors: an OpenAI-compatible `/embeddings` endpoint, or a deterministic offline
embedder (feature hashing) for development and tests that still puts similar texts near."""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import structlog

from ..ai_provider import traced
from ..errors import ProblemError

if TYPE_CHECKING:
    from ..config import Settings

logger = structlog.get_logger(__name__)
BATCH_SIZE = 64
_TOKEN = re.compile(r"\w+")


class EmbeddingProviderError(ProblemError):
    status = 502
    code = "ai_provider_error"
    detail = "The embedding provider failed; retry later."


class EmbeddingProviderTimeout(EmbeddingProviderError):
    status = 504
    code = "ai_provider_timeout"
    detail = "The embedding provider did not answer in time."


class EmbeddingProviderBusy(EmbeddingProviderError):
    status = 503
    code = "ai_provider_busy"
    detail = "The embedding provider is rate limiting this service; retry later."

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": "10"})


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: list[list[float]]
    tokens: int


class Embedder(Protocol):
    model: str
    dimensions: int

    async def embed(self, texts: list[str]) -> Embeddings: ...

    async def aclose(self) -> None: ...


def tokens_of(text: str) -> list[str]:
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


class HashingEmbedder:
    """Signed feature hashing of words and word pairs into a unit vector. Texts that share
    words share dimensions, so cosine similarity tracks word overlap; no model, no network."""

    model = "offline-hashing-v1"

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions

    def _vector(self, text: str) -> list[float]:
        words = tokens_of(text)
        features = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        vector = [0.0] * self.dimensions
        for feature in features:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "big") % self.dimensions
            vector[index] += 1.0 if digest[4] & 1 else -1.0
        norm = math.sqrt(sum(value * value for value in vector))
        if norm == 0:
            vector[0], norm = 1.0, 1.0  # no words: a fixed direction, far from real text
        return [value / norm for value in vector]

    async def embed(self, texts: list[str]) -> Embeddings:
        return Embeddings(
            vectors=[self._vector(text) for text in texts],
            tokens=sum(len(tokens_of(text)) for text in texts),
        )

    async def aclose(self) -> None:
        return None


class OpenAIEmbedder:
    """`POST {AI_BASE_URL}/embeddings` in batches; the key never leaves the Authorization header."""

    def __init__(
        self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.model = settings.embedding_model
        self.dimensions = settings.embedding_dimensions
        self._client = httpx.AsyncClient(
            base_url=settings.ai_base_url.rstrip("/") + "/",
            headers={"Authorization": f"Bearer {settings.ai_api_key.get_secret_value()}"},
            timeout=settings.ai_timeout_seconds,
            transport=traced(transport),
        )

    async def _batch(self, texts: list[str]) -> tuple[list[list[float]], int]:
        payload = {"model": self.model, "input": texts, "dimensions": self.dimensions}
        try:
            response = await self._client.post("embeddings", json=payload)
        except httpx.TimeoutException:
            raise EmbeddingProviderTimeout() from None
        except httpx.HTTPError as error:
            logger.warning("embedding_provider_unreachable", error=type(error).__name__)
            raise EmbeddingProviderError() from None
        if response.status_code == 429:
            raise EmbeddingProviderBusy()
        if response.status_code != 200:
            logger.warning("embedding_provider_error", status=response.status_code)
            raise EmbeddingProviderError()
        return _parse(response.json(), len(texts), self.dimensions)

    async def embed(self, texts: list[str]) -> Embeddings:
        vectors: list[list[float]] = []
        tokens = 0
        for start in range(0, len(texts), BATCH_SIZE):
            batch, used = await self._batch(texts[start : start + BATCH_SIZE])
            vectors += batch
            tokens += used
        return Embeddings(vectors=vectors, tokens=tokens)

    async def aclose(self) -> None:
        await self._client.aclose()


def _parse(body: Any, expected: int, dimensions: int) -> tuple[list[list[float]], int]:
    try:
        items = sorted(body["data"], key=lambda item: int(item["index"]))
        vectors = [[float(value) for value in item["embedding"]] for item in items]
        tokens = int(body.get("usage", {}).get("total_tokens", 0))
    except (KeyError, TypeError, ValueError):
        raise EmbeddingProviderError("The embedding provider sent an unreadable answer.") from None
    if len(vectors) != expected or any(len(vector) != dimensions for vector in vectors):
        raise EmbeddingProviderError(
            "The embedding provider's vectors do not match EMBEDDING_DIMENSIONS."
        )
    return vectors, tokens


def create_embedder(settings: Settings) -> Embedder:
    if settings.ai_provider == "openai":
        return OpenAIEmbedder(settings)
    return HashingEmbedder(settings.embedding_dimensions)
