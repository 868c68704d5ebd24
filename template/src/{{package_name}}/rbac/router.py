"""Admin endpoints for roles and the permission catalogue."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from ..auth.dependencies import Principal
from ..database import SessionDep
from ..paths import API_PREFIX
from ..requests import RequestMetaDep
from . import service
from .dependencies import Guard
from .permissions import Perm
from .routing import GuardedRoute
from .schemas import PermissionOut, RoleCreate, RoleName, RoleOut, RoleUpdate

router = APIRouter(prefix=API_PREFIX, tags=["rbac"], route_class=GuardedRoute)

RolePath = Annotated[RoleName, Path()]


@router.get("/permissions", response_model=list[PermissionOut])
async def list_permissions(
    _: Annotated[Principal, Guard(Perm.PERMISSIONS_READ)], session: SessionDep
) -> list[PermissionOut]:
    return [PermissionOut.model_validate(p) for p in await service.list_permissions(session)]


@router.get("/roles", response_model=list[RoleOut])
async def list_roles(
    _: Annotated[Principal, Guard(Perm.ROLES_READ)], session: SessionDep
) -> list[RoleOut]:
    return [RoleOut.model_validate(role) for role in await service.list_roles(session)]


@router.post("/roles", response_model=RoleOut, status_code=status.HTTP_201_CREATED)
async def create_role(
    body: RoleCreate,
    principal: Annotated[Principal, Guard(Perm.ROLES_WRITE, fresh=True)],
    session: SessionDep,
    meta: RequestMetaDep,
) -> RoleOut:
    """Create a role. You can only grant permissions you hold yourself."""
    role = await service.create_role(
        session,
        meta,
        principal.user_id,
        principal.permissions,
        name=body.name,
        description=body.description,
        permissions=body.permissions,
    )
    return RoleOut.model_validate(role)


@router.get("/roles/{role_name}", response_model=RoleOut)
async def read_role(
    role_name: RolePath, _: Annotated[Principal, Guard(Perm.ROLES_READ)], session: SessionDep
) -> RoleOut:
    return RoleOut.model_validate(await service.get_role(session, role_name))


@router.patch("/roles/{role_name}", response_model=RoleOut)
async def update_role(
    role_name: RolePath,
    body: RoleUpdate,
    principal: Annotated[Principal, Guard(Perm.ROLES_WRITE, fresh=True)],
    session: SessionDep,
    meta: RequestMetaDep,
) -> RoleOut:
    """Change a role; every holder gets the new permissions on their next request."""
    role = await service.update_role(
        session,
        meta,
        principal.user_id,
        principal.permissions,
        role_name,
        description=body.description,
        permissions=body.permissions,
    )
    return RoleOut.model_validate(role)


@router.delete("/roles/{role_name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_role(
    role_name: RolePath,
    principal: Annotated[Principal, Guard(Perm.ROLES_WRITE, fresh=True)],
    session: SessionDep,
    meta: RequestMetaDep,
) -> None:
    await service.delete_role(session, meta, principal.user_id, principal.permissions, role_name)
