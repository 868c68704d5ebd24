"""`reindex`: rebuild the vector store from the chunks kept in SQL."""

from __future__ import annotations

import asyncio

import typer


async def _reindex() -> tuple[int, int]:
    from ..cli import _settings
    from ..database import create_engine, create_sessionmaker
    from . import service
    from .embeddings import create_embedder
    from .vector_store import VectorStore

    settings = _settings()
    store = VectorStore.open(settings)
    embedder = create_embedder(settings)
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            return await service.reindex(session, embedder, store)
    finally:
        await embedder.aclose()
        await engine.dispose()
        store.close()


def reindex() -> None:
    """Rebuild every vector from SQL (after changing the embedding model or dimensions, or to
    move from embedded Qdrant to a server). Embedded mode: stop the service first."""
    from .vector_store import VectorStoreLocked

    try:
        documents, chunks = asyncio.run(_reindex())
    except VectorStoreLocked as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"reindexed {chunks} chunks of {documents} documents")
