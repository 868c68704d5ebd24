"""The documents runtime (vector store, embedder, PDF extractor): opened by the lifespan,
handed to routes by dependencies, checked by readiness, purged on account erasure."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import anyio
import structlog
from fastapi import Depends, Request

from .embeddings import Embedder, create_embedder
from .extraction import PdfExtractor
from .service import Limits
from .vector_store import VectorStore, VectorStoreUnavailable

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.datastructures import State

    from ..config import Settings

logger = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class DocumentsRuntime:
    store: VectorStore
    embedder: Embedder
    extractor: PdfExtractor
    limits: Limits


@asynccontextmanager
async def documents_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    # Opening embedded mode takes its directory lock: a second process fails here, at start.
    store = await anyio.to_thread.run_sync(VectorStore.open, settings)
    embedder = create_embedder(settings)
    try:
        try:
            await store.ensure_collection()
        except VectorStoreUnavailable:
            # A server that is down now: start anyway; document routes answer 503 until it is
            # back, and the collection is created by the first request that finds it missing.
            logger.warning("vector_store_unavailable_at_start", url=settings.qdrant_url)
        app.state.documents = DocumentsRuntime(
            store=store,
            embedder=embedder,
            extractor=PdfExtractor.create(
                settings.document_extract_timeout_seconds,
                settings.document_extract_memory_mib,
                settings.document_extract_concurrency,
            ),
            limits=Limits(
                settings.document_quota_documents,
                settings.document_quota_bytes,
                settings.document_max_chunks,
            ),
        )
        yield
    finally:
        await embedder.aclose()
        await anyio.to_thread.run_sync(store.close)


async def get_documents(request: Request) -> DocumentsRuntime:
    runtime: DocumentsRuntime = request.app.state.documents
    return runtime


DocumentsDep = Annotated[DocumentsRuntime, Depends(get_documents)]


async def vector_store_check(request: Request) -> None:
    await request.app.state.documents.store.check()


async def erase_owner(state: State, user_id: uuid.UUID) -> None:
    """The account is gone from SQL (its documents and chunks cascaded); drop its vectors.
    If the store is down they stay behind unreachable (search is per owner and re-checked in
    SQL) until the next `reindex`, which rebuilds the store from SQL alone."""
    runtime: DocumentsRuntime = state.documents
    try:
        await runtime.store.delete_owner(user_id)
    except VectorStoreUnavailable:
        logger.warning("erased_account_vectors_left", user_id=str(user_id))
