"""The rules of authorization: roles, their permissions, and who may hand them out."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..audit import service as audit
from ..errors import Conflict, Forbidden, NotFound, ProblemError
from ..requests import RequestMeta
from ..users.models import User
from .models import Permission, Role, role_permissions, user_roles
from .permissions import ADMIN_ROLE


class RoleNotFound(NotFound):
    code = "role_not_found"
    detail = "The role does not exist."


class UnknownPermissions(ProblemError):
    status = 422
    code = "unknown_permissions"


class BuiltinRole(Conflict):
    code = "builtin_role"
    detail = "Built-in roles cannot be deleted, and the admin role cannot be changed."


class LastAdmin(Conflict):
    code = "last_admin"
    detail = "The last active admin cannot lose the admin role."


class EscalationRefused(Forbidden):
    code = "privilege_escalation"
    detail = "You cannot grant permissions you do not hold yourself."


async def list_permissions(session: AsyncSession) -> list[Permission]:
    return list(await session.scalars(select(Permission).order_by(Permission.name)))


async def list_roles(session: AsyncSession) -> list[Role]:
    return list(await session.scalars(select(Role).order_by(Role.name)))


async def get_role(session: AsyncSession, name: str) -> Role:
    role = await session.scalar(select(Role).where(Role.name == name))
    if role is None:
        raise RoleNotFound()
    return role


async def _resolve_permissions(session: AsyncSession, names: Iterable[str]) -> list[Permission]:
    wanted = set(names)
    # Ordered like the relationship, so a role answers the same before and after a reload.
    query = select(Permission).where(Permission.name.in_(wanted)).order_by(Permission.name)
    found = list(await session.scalars(query))
    missing = wanted - {permission.name for permission in found}
    if missing:
        raise UnknownPermissions("Unknown permissions: " + ", ".join(sorted(missing)))
    return found


async def permissions_of(session: AsyncSession, user_id: uuid.UUID) -> frozenset[str]:
    """Every permission `user_id` holds through their roles, as stored right now."""
    names = await session.scalars(
        select(Permission.name)
        .join(role_permissions, role_permissions.c.permission_id == Permission.id)
        .join(user_roles, user_roles.c.role_id == role_permissions.c.role_id)
        .where(user_roles.c.user_id == user_id)
    )
    return frozenset(names)


def refuse_escalation(granted: Iterable[str], held: frozenset[str]) -> None:
    if not set(granted) <= held:
        raise EscalationRefused()


async def create_role(
    session: AsyncSession,
    meta: RequestMeta,
    actor_id: uuid.UUID,
    held: frozenset[str],
    *,
    name: str,
    description: str,
    permissions: list[str],
) -> Role:
    resolved = await _resolve_permissions(session, permissions)
    refuse_escalation(permissions, held)
    role = Role(name=name, description=description, permissions=resolved)
    session.add(role)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict("A role with this name already exists.") from None
    audit.record(
        session,
        meta,
        "rbac.role_created",
        actor_id=actor_id,
        subject=name,
        permissions=sorted(permissions),
    )
    await session.commit()
    return role


async def update_role(
    session: AsyncSession,
    meta: RequestMeta,
    actor_id: uuid.UUID,
    held: frozenset[str],
    name: str,
    *,
    description: str | None,
    permissions: list[str] | None,
) -> Role:
    role = await get_role(session, name)
    if role.name == ADMIN_ROLE:
        raise BuiltinRole()
    changes: dict[str, Any] = {}
    if description is not None:
        role.description = description
        changes["description"] = description
    if permissions is not None:
        # Changing a role is granting its new permissions to everyone who holds it.
        resolved = await _resolve_permissions(session, permissions)
        refuse_escalation(permissions, held)
        role.permissions = resolved
        changes["permissions"] = sorted(permissions)
    audit.record(session, meta, "rbac.role_updated", actor_id=actor_id, subject=name, **changes)
    await session.commit()
    return role


async def delete_role(
    session: AsyncSession, meta: RequestMeta, actor_id: uuid.UUID, name: str
) -> None:
    role = await get_role(session, name)
    if role.is_builtin:
        raise BuiltinRole()
    await session.delete(role)
    audit.record(session, meta, "rbac.role_deleted", actor_id=actor_id, subject=name)
    await session.commit()


async def role_names(session: AsyncSession, user_id: uuid.UUID) -> list[str]:
    return list(
        await session.scalars(
            select(Role.name)
            .join(user_roles, user_roles.c.role_id == Role.id)
            .where(user_roles.c.user_id == user_id)
            .order_by(Role.name)
        )
    )


async def grant_role(session: AsyncSession, user_id: uuid.UUID, role_name: str) -> bool:
    """Give `user_id` the role; False when they already held it. The caller commits."""
    return await _link(session, user_id, await get_role(session, role_name))


async def _link(session: AsyncSession, user_id: uuid.UUID, role: Role) -> bool:
    held = await session.scalar(
        select(func.count())
        .select_from(user_roles)
        .where(user_roles.c.user_id == user_id, user_roles.c.role_id == role.id)
    )
    if held:
        return False
    await session.execute(insert(user_roles).values(user_id=user_id, role_id=role.id))
    return True


async def _role_within(session: AsyncSession, held: frozenset[str], role_name: str) -> Role:
    """The role, if handing it out (or taking it away) grants nothing beyond `held`."""
    role = await get_role(session, role_name)
    refuse_escalation((permission.name for permission in role.permissions), held)
    return role


async def assign_role(
    session: AsyncSession,
    meta: RequestMeta,
    actor_id: uuid.UUID,
    held: frozenset[str],
    user_id: uuid.UUID,
    role_name: str,
) -> None:
    role = await _role_within(session, held, role_name)
    try:
        granted = await _link(session, user_id, role)
    except IntegrityError:  # a concurrent grant of the same role
        await session.rollback()
        return
    if granted:
        audit.record(
            session,
            meta,
            "rbac.role_assigned",
            actor_id=actor_id,
            subject=str(user_id),
            role=role_name,
        )
        await session.commit()


async def revoke_role(
    session: AsyncSession,
    meta: RequestMeta,
    actor_id: uuid.UUID,
    held: frozenset[str],
    user_id: uuid.UUID,
    role_name: str,
) -> None:
    role = await _role_within(session, held, role_name)
    if role.name == ADMIN_ROLE and await is_last_admin(session, user_id):
        raise LastAdmin()
    result = await session.execute(
        delete(user_roles).where(user_roles.c.user_id == user_id, user_roles.c.role_id == role.id)
    )
    if result.rowcount:  # type: ignore[attr-defined]
        audit.record(
            session,
            meta,
            "rbac.role_revoked",
            actor_id=actor_id,
            subject=str(user_id),
            role=role_name,
        )
    await session.commit()


async def is_last_admin(session: AsyncSession, user_id: uuid.UUID) -> bool:
    admins = list(
        await session.scalars(
            select(user_roles.c.user_id)
            .join(Role, Role.id == user_roles.c.role_id)
            .join(User, User.id == user_roles.c.user_id)
            .where(Role.name == ADMIN_ROLE, User.is_active.is_(True))
        )
    )
    return admins == [user_id]
