"""Document endpoints: upload, list, read, delete and search, each for the caller's own
documents only (admins included)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status
from starlette.datastructures import UploadFile

from ..auth.dependencies import Principal, SettingsDep
from ..database import SessionDep
from ..paths import API_PREFIX
from ..rbac.dependencies import Guard
from ..rbac.routing import GuardedRoute
from ..schemas import Page, PageParams, page_params
from . import service
from .dependencies import DocumentsDep
from .permissions import DocumentPerm
from .schemas import DocumentOut, SearchRequest, SearchResults
from .uploads import DocumentTooLarge, InvalidUpload, check_upload

router = APIRouter(prefix=f"{API_PREFIX}/documents", tags=["documents"], route_class=GuardedRoute)

READ = Guard(DocumentPerm.READ)
WRITE = Guard(DocumentPerm.WRITE)

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


async def _read_upload(request: Request, max_bytes: int) -> tuple[str | None, bytes]:
    """The one file of the multipart body. The form is parsed only now, after the guard has
    authenticated the caller; the body-limit middleware caps it while it streams."""
    async with request.form(max_files=1, max_fields=1) as form:
        files = form.getlist("file")
        if len(files) != 1 or not isinstance(files[0], UploadFile):
            raise InvalidUpload()
        upload = files[0]
        content = await upload.read(max_bytes + 1)
        if len(content) > max_bytes:
            raise DocumentTooLarge(f"The document exceeds {max_bytes} bytes.")
        return upload.filename, content


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DocumentOut,
    openapi_extra=UPLOAD_BODY,
    responses={
        413: {"description": "Larger than DOCUMENT_MAX_BYTES"},
        415: {"description": "Not a PDF, text or Markdown file, or not what its name says"},
        422: {"description": "Unreadable, encrypted, empty or not UTF-8"},
    },
)
async def upload_document(
    request: Request,
    principal: Annotated[Principal, WRITE],
    session: SessionDep,
    settings: SettingsDep,
    documents: DocumentsDep,
) -> DocumentOut:
    """Upload one PDF, text or Markdown file in the multipart field `file`."""
    filename, content = await _read_upload(request, settings.document_max_bytes)
    document = await service.create(
        session,
        owner_id=principal.user_id,
        upload=check_upload(filename, content),
        limits=documents.limits,
        extractor=documents.extractor,
        embedder=documents.embedder,
        store=documents.store,
    )
    return DocumentOut.model_validate(document)


@router.get("", response_model=Page[DocumentOut])
async def list_documents(
    principal: Annotated[Principal, READ],
    session: SessionDep,
    params: Annotated[PageParams, Depends(page_params)],
) -> Page[DocumentOut]:
    """Your documents, newest first."""
    items, total = await service.page(
        session, principal.user_id, limit=params.limit, offset=params.offset
    )
    return Page(
        items=[DocumentOut.model_validate(item) for item in items],
        total=total,
        limit=params.limit,
        offset=params.offset,
    )


@router.get("/{document_id:uuid}", response_model=DocumentOut)
async def read_document(
    document_id: uuid.UUID, principal: Annotated[Principal, READ], session: SessionDep
) -> DocumentOut:
    return DocumentOut.model_validate(await service.get(session, principal.user_id, document_id))


@router.delete("/{document_id:uuid}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_document(
    document_id: uuid.UUID,
    principal: Annotated[Principal, WRITE],
    session: SessionDep,
    documents: DocumentsDep,
) -> None:
    """Delete the document, its original, its chunks and its vectors."""
    await service.remove(session, documents.store, principal.user_id, document_id)


@router.post("/search", response_model=SearchResults)
async def search_documents(
    body: SearchRequest,
    principal: Annotated[Principal, READ],
    session: SessionDep,
    documents: DocumentsDep,
) -> SearchResults:
    """Semantic search over your own documents: passages with document, page and score."""
    hits = await service.search(
        session,
        owner_id=principal.user_id,
        query=body.query,
        limit=body.limit,
        embedder=documents.embedder,
        store=documents.store,
    )
    return SearchResults(hits=hits)
