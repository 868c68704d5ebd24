"""User endpoints: `/users/me` for everyone, `/users` and `/users/{id}` for admins."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from .. import features
from ..auth.dependencies import PasswordServiceDep, Principal, RateLimiterDep, load_user
from ..database import SessionDep
from ..paths import API_PREFIX
from ..rbac import service as rbac_service
from ..rbac.dependencies import Guard
from ..rbac.permissions import Perm
from ..rbac.routing import GuardedRoute
from ..requests import RequestMetaDep
from ..schemas import Page, PageParams, page_params
from . import service
from .schemas import AccountDeletion, AccountExport, AdminUserUpdate, ProfileUpdate, UserOut

router = APIRouter(prefix=f"{API_PREFIX}/users", tags=["users"], route_class=GuardedRoute)

PageDep = Annotated[PageParams, Depends(page_params)]


@router.get("/me", response_model=UserOut)
async def read_me(
    principal: Annotated[Principal, Guard(Perm.ACCOUNT_READ)],
) -> UserOut:
    return service.profile(principal.user)


@router.patch("/me", response_model=UserOut)
async def update_me(
    body: ProfileUpdate,
    principal: Annotated[Principal, Guard(Perm.ACCOUNT_UPDATE)],
    session: SessionDep,
    meta: RequestMetaDep,
) -> UserOut:
    user = await service.update_profile(session, meta, principal.user_id, full_name=body.full_name)
    return service.to_out(user)


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT)
async def delete_me(
    body: AccountDeletion,
    principal: Annotated[Principal, Guard(Perm.ACCOUNT_DELETE)],
    session: SessionDep,
    passwords: PasswordServiceDep,
    limiter: RateLimiterDep,
    meta: RequestMetaDep,
    request: Request,
) -> None:
    """Erase the account (GDPR). The password confirms the request; it is throttled and
    audited like a login."""
    await service.delete_account(
        session,
        passwords,
        limiter,
        meta,
        await load_user(session, principal),
        password=body.password,
    )
    await features.erase_account(request.app.state, principal.user_id)


@router.get("/me/export", response_model=AccountExport)
async def export_me(
    principal: Annotated[Principal, Guard(Perm.ACCOUNT_EXPORT)],
    session: SessionDep,
    response: Response,
) -> AccountExport:
    """Everything the service stores about the caller, as one JSON document (GDPR)."""
    response.headers["Content-Disposition"] = 'attachment; filename="account-export.json"'
    return await service.export(session, principal.user_id, principal.permissions)


@router.get("", response_model=Page[UserOut])
async def list_users(
    _: Annotated[Principal, Guard(Perm.USERS_READ)],
    session: SessionDep,
    params: PageDep,
    email: Annotated[str | None, Query(max_length=254)] = None,
) -> Page[UserOut]:
    users, total = await service.page(
        session, limit=params.limit, offset=params.offset, email=email
    )
    return Page(
        items=[service.to_out(user) for user in users],
        total=total,
        limit=params.limit,
        offset=params.offset,
    )


@router.get("/{user_id}", response_model=UserOut)
async def read_user(
    user_id: uuid.UUID, _: Annotated[Principal, Guard(Perm.USERS_READ)], session: SessionDep
) -> UserOut:
    return service.to_out(await service.get(session, user_id))


@router.patch("/{user_id}", response_model=UserOut)
async def update_user(
    user_id: uuid.UUID,
    body: AdminUserUpdate,
    principal: Annotated[Principal, Guard(Perm.USERS_UPDATE, fresh=True)],
    session: SessionDep,
    meta: RequestMetaDep,
) -> UserOut:
    """Edit a user; `{"is_active": false}` disables them and ends their sessions at once."""
    user = await service.admin_update(
        session,
        meta,
        principal.user_id,
        principal.permissions,
        user_id,
        full_name=body.full_name,
        is_active=body.is_active,
    )
    return service.to_out(user)


@router.delete("/{user_id}/sessions", status_code=status.HTTP_204_NO_CONTENT)
async def end_sessions(
    user_id: uuid.UUID,
    principal: Annotated[Principal, Guard(Perm.USERS_UPDATE, fresh=True)],
    session: SessionDep,
    meta: RequestMetaDep,
) -> None:
    """End every session of the user at once (their access tokens included); audited."""
    await service.end_sessions(session, meta, principal.user_id, principal.permissions, user_id)


@router.put("/{user_id}/roles/{role_name}", status_code=status.HTTP_204_NO_CONTENT)
async def assign_role(
    user_id: uuid.UUID,
    role_name: str,
    principal: Annotated[Principal, Guard(Perm.ROLES_ASSIGN, fresh=True)],
    session: SessionDep,
    meta: RequestMetaDep,
) -> None:
    await service.get(session, user_id)
    await rbac_service.assign_role(
        session, meta, principal.user_id, principal.permissions, user_id, role_name
    )


@router.delete("/{user_id}/roles/{role_name}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_role(
    user_id: uuid.UUID,
    role_name: str,
    principal: Annotated[Principal, Guard(Perm.ROLES_ASSIGN, fresh=True)],
    session: SessionDep,
    meta: RequestMetaDep,
) -> None:
    await service.get(session, user_id)
    await rbac_service.revoke_role(
        session, meta, principal.user_id, principal.permissions, user_id, role_name
    )
