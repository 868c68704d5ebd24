"""The rules of documents: quota, storage, indexing, owner-only reads, search and deletion."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence

import structlog
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import Conflict, NotFound
from .chunking import chunk_pages
from .embeddings import Embedder
from .extraction import DocumentEmpty, PdfExtractor, extract_pages
from .models import Document, DocumentChunk, DocumentOriginal, DocumentStorage, EmbeddingUsage
from .schemas import SearchHit
from .uploads import CheckedUpload, DocumentTooLarge
from .vector_store import VectorStore

logger = structlog.get_logger(__name__)


class DocumentNotFound(NotFound):
    code = "document_not_found"
    detail = "The document does not exist."


class QuotaExceeded(Conflict):
    code = "document_quota_exceeded"
    detail = "Your document storage quota is used up; delete documents to upload more."


class Limits:
    """The per-user storage quota and per-document chunk cap in force."""

    def __init__(self, documents: int, total_bytes: int, max_chunks: int) -> None:
        self.documents = documents
        self.bytes = total_bytes
        self.max_chunks = max_chunks


async def _ensure_storage_row(session: AsyncSession, owner_id: uuid.UUID) -> None:
    """The owner's counters row, created on first use and committed at once: a losing racer's
    duplicate-key error is rolled back, so it holds no lock the reservation could deadlock on."""
    exists = await session.scalar(
        select(DocumentStorage.owner_id).where(DocumentStorage.owner_id == owner_id)
    )
    if exists is not None:
        return
    try:
        await session.execute(
            insert(DocumentStorage).values(owner_id=owner_id, documents=0, bytes=0)
        )
        await session.commit()
    except IntegrityError:
        await session.rollback()  # a concurrent upload created it first


async def _reserve(session: AsyncSession, owner_id: uuid.UUID, size: int, limits: Limits) -> None:
    """Count the document against the quota with one conditional UPDATE: concurrent uploads
    queue on the row and each re-checks the limit, so together they can never overshoot."""
    await _ensure_storage_row(session, owner_id)
    result = await session.execute(
        update(DocumentStorage)
        .where(
            DocumentStorage.owner_id == owner_id,
            DocumentStorage.documents + 1 <= limits.documents,
            DocumentStorage.bytes + size <= limits.bytes,
        )
        .values(documents=DocumentStorage.documents + 1, bytes=DocumentStorage.bytes + size)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise QuotaExceeded()


async def _release(session: AsyncSession, owner_id: uuid.UUID, size: int) -> None:
    await session.execute(
        update(DocumentStorage)
        .where(DocumentStorage.owner_id == owner_id)
        .values(documents=DocumentStorage.documents - 1, bytes=DocumentStorage.bytes - size)
        .execution_options(synchronize_session=False)
    )


def record_usage(
    session: AsyncSession, user_id: uuid.UUID, model: str, purpose: str, tokens: int
) -> None:
    session.add(EmbeddingUsage(user_id=user_id, model=model, purpose=purpose, tokens=tokens))


async def create(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID,
    upload: CheckedUpload,
    limits: Limits,
    extractor: PdfExtractor,
    embedder: Embedder,
    store: VectorStore,
) -> Document:
    """Extract, chunk and embed the upload, store it with its chunks under the quota, then
    index its vectors; a failed indexing removes the document again."""
    # Hand the connection back to the pool while the slow, database-free work runs.
    await session.commit()
    pages = await extract_pages(extractor, upload.media_type, upload.content)
    chunks = chunk_pages(pages)
    if not chunks:
        raise DocumentEmpty()
    if len(chunks) > limits.max_chunks:
        raise DocumentTooLarge(f"The document has more than {limits.max_chunks} passages.")
    embeddings = await embedder.embed([chunk.text for chunk in chunks])

    size = len(upload.content)
    await _reserve(session, owner_id, size, limits)
    document = Document(
        id=uuid.uuid4(),
        owner_id=owner_id,
        filename=upload.filename,
        media_type=upload.media_type,
        size_bytes=size,
        sha256=hashlib.sha256(upload.content).hexdigest(),
        page_count=len(pages),
        chunk_count=len(chunks),
    )
    session.add(document)
    await session.flush()
    session.add(DocumentOriginal(document_id=document.id, content=upload.content))
    chunk_ids = [uuid.uuid4() for _ in chunks]
    await session.execute(
        insert(DocumentChunk),
        [
            {
                "id": chunk_id,
                "document_id": document.id,
                "owner_id": owner_id,
                "ordinal": chunk.ordinal,
                "page": chunk.page,
                "text": chunk.text,
            }
            for chunk_id, chunk in zip(chunk_ids, chunks, strict=True)
        ],
    )
    record_usage(session, owner_id, embedder.model, "index", embeddings.tokens)
    await session.commit()
    try:
        await store.upsert(
            owner_id=owner_id,
            document_id=document.id,
            points=list(zip(chunk_ids, embeddings.vectors, strict=True)),
        )
    except Exception:
        await _remove(session, store, document, purge_vectors=False)
        raise
    logger.info("document_indexed", document_id=str(document.id), chunks=len(chunks))
    return document


async def page(
    session: AsyncSession, owner_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[Document], int]:
    query = select(Document).where(Document.owner_id == owner_id)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    documents = await session.scalars(
        query.order_by(Document.created_at.desc(), Document.id).limit(limit).offset(offset)
    )
    return list(documents), total or 0


async def get(session: AsyncSession, owner_id: uuid.UUID, document_id: uuid.UUID) -> Document:
    """The caller's document; someone else's is as absent as a missing one (404)."""
    document = await session.scalar(
        select(Document).where(Document.id == document_id, Document.owner_id == owner_id)
    )
    if document is None:
        raise DocumentNotFound()
    return document


async def _remove(
    session: AsyncSession, store: VectorStore, document: Document, *, purge_vectors: bool
) -> None:
    if purge_vectors:
        await store.delete_document(document.id)  # first: a store outage deletes nothing
    result = await session.execute(delete(Document).where(Document.id == document.id))
    if result.rowcount:  # type: ignore[attr-defined]
        await _release(session, document.owner_id, document.size_bytes)
    await session.commit()


async def remove(
    session: AsyncSession, store: VectorStore, owner_id: uuid.UUID, document_id: uuid.UUID
) -> None:
    await _remove(session, store, await get(session, owner_id, document_id), purge_vectors=True)


async def search(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID,
    query: str,
    limit: int,
    embedder: Embedder,
    store: VectorStore,
) -> list[SearchHit]:
    embeddings = await embedder.embed([query])
    record_usage(session, owner_id, embedder.model, "search", embeddings.tokens)
    await session.commit()
    hits = await store.search(owner_id=owner_id, vector=embeddings.vectors[0], limit=limit)
    return await _owned_hits(session, owner_id, [(hit.chunk_id, hit.score) for hit in hits])


async def _owned_hits(
    session: AsyncSession, owner_id: uuid.UUID, hits: Sequence[tuple[uuid.UUID, float]]
) -> list[SearchHit]:
    """The vector store's hits that SQL confirms belong to `owner_id`, in the store's order.
    A hit of another owner, or of a deleted chunk, is dropped and logged."""
    if not hits:
        return []
    rows = (
        await session.execute(
            select(DocumentChunk, Document.filename)
            .join(Document, Document.id == DocumentChunk.document_id)
            .where(
                DocumentChunk.id.in_([chunk_id for chunk_id, _ in hits]),
                Document.owner_id == owner_id,
                DocumentChunk.owner_id == owner_id,
            )
        )
    ).all()
    owned = {row.DocumentChunk.id: row for row in rows}
    if len(owned) != len(hits):
        logger.warning("vector_hits_dropped", dropped=len(hits) - len(owned))
    return [
        SearchHit(
            document_id=owned[chunk_id].DocumentChunk.document_id,
            filename=owned[chunk_id].filename,
            page=owned[chunk_id].DocumentChunk.page,
            text=owned[chunk_id].DocumentChunk.text,
            score=score,
        )
        for chunk_id, score in hits
        if chunk_id in owned
    ]


async def reindex(
    session: AsyncSession, embedder: Embedder, store: VectorStore, *, batch: int = 256
) -> tuple[int, int]:
    """Rebuild every vector from the chunks in SQL; returns (documents, chunks)."""
    await store.ensure_collection(recreate=True)
    documents = chunks = 0
    ids = (await session.scalars(select(Document.id).order_by(Document.created_at))).all()
    for document_id in ids:
        rows = (
            await session.scalars(
                select(DocumentChunk)
                .where(DocumentChunk.document_id == document_id)
                .order_by(DocumentChunk.ordinal)
            )
        ).all()
        for start in range(0, len(rows), batch):
            part = rows[start : start + batch]
            embeddings = await embedder.embed([row.text for row in part])
            record_usage(session, part[0].owner_id, embedder.model, "reindex", embeddings.tokens)
            await store.upsert(
                owner_id=part[0].owner_id,
                document_id=document_id,
                points=[
                    (row.id, vector) for row, vector in zip(part, embeddings.vectors, strict=True)
                ],
            )
        await session.commit()
        documents += 1
        chunks += len(rows)
    return documents, chunks
