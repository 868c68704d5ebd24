"""Admin endpoint for reading the audit log."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ..auth.dependencies import Principal
from ..database import SessionDep
from ..paths import API_PREFIX
from ..rbac.dependencies import Guard
from ..rbac.permissions import Perm
from ..rbac.routing import GuardedRoute
from ..schemas import Page, PageParams, page_params
from . import service
from .schemas import AuditEventOut

router = APIRouter(prefix=f"{API_PREFIX}/audit-events", tags=["audit"], route_class=GuardedRoute)


@router.get("", response_model=Page[AuditEventOut])
async def list_audit_events(
    _: Annotated[Principal, Guard(Perm.AUDIT_READ)],
    session: SessionDep,
    params: Annotated[PageParams, Depends(page_params)],
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor_id: uuid.UUID | None = None,
) -> Page[AuditEventOut]:
    """Newest first."""
    events, total = await service.page(
        session, limit=params.limit, offset=params.offset, action=action, actor_id=actor_id
    )
    return Page(
        items=[AuditEventOut.model_validate(event) for event in events],
        total=total,
        limit=params.limit,
        offset=params.offset,
    )
