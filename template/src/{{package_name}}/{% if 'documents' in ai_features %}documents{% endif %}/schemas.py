"""What crosses the HTTP boundary for documents."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from ..schemas import InputModel, OutputModel

MAX_SEARCH_HITS = 50


class DocumentOut(OutputModel):
    id: uuid.UUID
    filename: str
    media_type: str
    size_bytes: int
    sha256: str
    page_count: int
    chunk_count: int
    created_at: datetime


class SearchRequest(InputModel):
    query: str = Field(min_length=1, max_length=2000)
    limit: int = Field(default=10, ge=1, le=MAX_SEARCH_HITS)


class SearchHit(OutputModel):
    document_id: uuid.UUID
    filename: str
    page: int
    text: str
    score: float


class SearchResults(OutputModel):
    hits: list[SearchHit]
