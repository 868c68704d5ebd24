"""Qdrant behind one interface, embedded (local mode on QDRANT_PATH) or a server (QDRANT_URL).

The store keeps vectors and ids only: each point's id is a chunk id, its payload the owner and
document ids. Search cannot be called without an owner. The client is the synchronous one run
in worker threads: local mode does its work in Python whichever client is used, so an async
wrapper would still block the event loop. Embedded mode gets one thread (it is not thread-safe),
server mode a few.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import anyio
import httpx
import structlog
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ApiException
from qdrant_client.models import (
    Distance,
    FieldCondition,
    Filter,
    FilterSelector,
    MatchValue,
    PayloadSchemaType,
    PointStruct,
    VectorParams,
)

from ..errors import ServiceUnavailable

if TYPE_CHECKING:
    from ..config import Settings

logger = structlog.get_logger(__name__)
T = TypeVar("T")
SERVER_THREADS = 8
OWNER = "owner_id"
DOCUMENT = "document_id"


class VectorStoreUnavailable(ServiceUnavailable):
    code = "vector_store_unavailable"
    detail = "The vector store is unavailable; retry later."


class VectorStoreLocked(RuntimeError):
    """Embedded mode's directory is held by another process."""


@dataclass(frozen=True, slots=True)
class VectorHit:
    chunk_id: uuid.UUID
    score: float


class VectorStore:
    def __init__(self, client: QdrantClient, collection: str, dimensions: int, *, server: bool):
        self._client = client
        self.collection = collection
        self.dimensions = dimensions
        self.server = server
        self._limiter = anyio.CapacityLimiter(SERVER_THREADS if server else 1)
        self._collection_ready = False

    @classmethod
    def open(cls, settings: Settings) -> VectorStore:
        """Connect (server) or open and lock the directory (embedded); blocking, call once."""
        if settings.qdrant_url:
            api_key = settings.qdrant_api_key
            client = QdrantClient(
                url=settings.qdrant_url,
                api_key=api_key.get_secret_value() if api_key else None,
                timeout=int(max(settings.qdrant_timeout_seconds, 1)),
                check_compatibility=False,  # no network at start; readiness reports outages
            )
        else:
            try:
                client = QdrantClient(path=settings.qdrant_path)
            except RuntimeError as error:
                raise VectorStoreLocked(
                    f"embedded Qdrant at QDRANT_PATH={settings.qdrant_path} is in use by another "
                    "process; embedded mode serves exactly one process: stop the other one, or "
                    "set QDRANT_URL to a Qdrant server for several workers or replicas"
                ) from error
        return cls(
            client,
            settings.qdrant_collection,
            settings.embedding_dimensions,
            server=bool(settings.qdrant_url),
        )

    async def _run(self, call: Callable[[], T]) -> T:
        try:
            return await anyio.to_thread.run_sync(call, limiter=self._limiter)
        except (ApiException, httpx.HTTPError, OSError) as error:
            logger.warning("vector_store_unavailable", error=type(error).__name__)
            raise VectorStoreUnavailable() from None

    # ------------------------------------------------------------------ collection
    def _ensure_collection(self, recreate: bool) -> None:
        exists = self._client.collection_exists(self.collection)
        if exists and recreate:
            self._client.delete_collection(self.collection)
            exists = False
        if exists:
            params = self._client.get_collection(self.collection).config.params.vectors
            size = getattr(params, "size", None)
            if size != self.dimensions:
                raise RuntimeError(
                    f"the vector collection {self.collection!r} holds {size}-dimensional "
                    f"vectors but EMBEDDING_DIMENSIONS={self.dimensions}; run `reindex`"
                )
            return
        self._client.create_collection(
            self.collection,
            vectors_config=VectorParams(size=self.dimensions, distance=Distance.COSINE),
        )
        if not self.server:
            return  # local mode scans every point; payload indexes only help a server
        for field in (OWNER, DOCUMENT):
            self._client.create_payload_index(
                self.collection, field, field_schema=PayloadSchemaType.KEYWORD
            )

    async def ensure_collection(self, *, recreate: bool = False) -> None:
        await self._run(partial(self._ensure_collection, recreate))
        self._collection_ready = True

    async def _points(self, call: Callable[[], T]) -> T:
        """A point operation; the collection is made first if the store was down at start."""
        if not self._collection_ready:
            await self.ensure_collection()
        return await self._run(call)

    async def check(self) -> None:
        await self._run(partial(self._client.collection_exists, self.collection))

    def close(self) -> None:
        self._client.close()

    # ---------------------------------------------------------------------- points
    async def upsert(
        self,
        *,
        owner_id: uuid.UUID,
        document_id: uuid.UUID,
        points: Sequence[tuple[uuid.UUID, list[float]]],
    ) -> None:
        payload = {OWNER: str(owner_id), DOCUMENT: str(document_id)}
        structs = [
            PointStruct(id=str(chunk), vector=vector, payload=payload) for chunk, vector in points
        ]
        await self._points(partial(self._client.upsert, self.collection, structs, wait=True))

    def _owner_filter(self, owner_id: uuid.UUID) -> Filter | None:
        return Filter(must=[FieldCondition(key=OWNER, match=MatchValue(value=str(owner_id)))])

    async def search(
        self, *, owner_id: uuid.UUID, vector: list[float], limit: int
    ) -> list[VectorHit]:
        """The owner's nearest chunks. Callers still re-check every hit against SQL."""
        call = partial(
            self._client.query_points,
            self.collection,
            query=vector,
            query_filter=self._owner_filter(owner_id),
            limit=limit,
            with_payload=False,
        )
        response = await self._points(call)
        return [
            VectorHit(uuid.UUID(str(point.id)), float(point.score)) for point in response.points
        ]

    def _delete(self, key: str, value: uuid.UUID) -> None:
        selector = FilterSelector(
            filter=Filter(must=[FieldCondition(key=key, match=MatchValue(value=str(value)))])
        )
        self._client.delete(self.collection, points_selector=selector, wait=True)

    async def delete_document(self, document_id: uuid.UUID) -> None:
        await self._points(partial(self._delete, DOCUMENT, document_id))

    async def delete_owner(self, owner_id: uuid.UUID) -> None:
        await self._points(partial(self._delete, OWNER, owner_id))

    async def count(
        self, *, owner_id: uuid.UUID | None = None, document_id: uuid.UUID | None = None
    ) -> int:
        """Points stored, optionally of one owner or document (operations and tests)."""
        conditions = [
            FieldCondition(key=key, match=MatchValue(value=str(value)))
            for key, value in ((OWNER, owner_id), (DOCUMENT, document_id))
            if value is not None
        ]
        call = partial(
            self._client.count,
            self.collection,
            count_filter=Filter(must=conditions) if conditions else None,
            exact=True,
        )
        return (await self._points(call)).count
