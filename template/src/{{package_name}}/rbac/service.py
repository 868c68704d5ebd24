"""The rules of authorization: roles, their permissions, and who may hand them out."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..audit import service as audit
from ..auth.principal_changes import NOTED, note_users
from ..errors import Conflict, Forbidden, NotFound, ProblemError
from ..requests import RequestMeta
from ..users.models import User
from .models import Permission, Role, role_permissions, user_roles
from .permissions import ADMIN_ROLE, SELF_SERVICE, USER_ROLE


class RoleNotFound(NotFound):
    code = "role_not_found"
    detail = "The role does not exist."


class UnknownPermissions(ProblemError):
    status = 422
    code = "unknown_permissions"


class BuiltinRole(Conflict):
    code = "builtin_role"
    detail = (
        "Built-in roles cannot be deleted, the admin role cannot be changed, and the user "
        "role keeps its self-service permissions."
    )
    audit_action = "rbac.builtin_role_refused"


class LastAdmin(Conflict):
    code = "last_admin"
    detail = "The last active admin cannot lose the admin role."
    audit_action = "rbac.last_admin_refused"


class EscalationRefused(Forbidden):
    code = "privilege_escalation"
    detail = (
        "You cannot grant, take away or edit permissions you do not hold yourself, nor manage "
        "an account that holds them."
    )
    audit_action = "rbac.escalation_refused"


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


def refuse_escalation(touched: Iterable[str], held: frozenset[str]) -> None:
    """Refuse an action that grants, removes or edits permissions the actor does not hold."""
    beyond = set(touched) - held
    if beyond:
        raise EscalationRefused(audit_details={"beyond": sorted(beyond)})


async def refuse_managing_above(
    session: AsyncSession, user_id: uuid.UUID, held: frozenset[str]
) -> None:
    """Nobody manages (edits, disables, changes the roles of) an account holding more."""
    refuse_escalation(await permissions_of(session, user_id), held)


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
    # Editing a role acts on every permission it holds, for everyone who holds it.
    refuse_escalation((permission.name for permission in role.permissions), held)
    changes: dict[str, Any] = {}
    if description is not None:
        role.description = description
        changes["description"] = description
    if permissions is not None:
        resolved = await _resolve_permissions(session, permissions)
        refuse_escalation(permissions, held)
        if role.name == USER_ROLE and not set(permissions) >= SELF_SERVICE:
            raise BuiltinRole("The user role keeps its self-service permissions.")
        role.permissions = resolved
        changes["permissions"] = sorted(permissions)
    audit.record(session, meta, "rbac.role_updated", actor_id=actor_id, subject=name, **changes)
    await session.commit()
    return role


async def delete_role(
    session: AsyncSession,
    meta: RequestMeta,
    actor_id: uuid.UUID,
    held: frozenset[str],
    name: str,
) -> None:
    role = await get_role(session, name)
    if role.is_builtin:
        raise BuiltinRole()
    # Deleting a role takes its permissions from everyone who holds it.
    refuse_escalation((permission.name for permission in role.permissions), held)
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
    note_users(session, [user_id])
    await session.execute(
        insert(user_roles).values(user_id=user_id, role_id=role.id), execution_options=NOTED
    )
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
    await refuse_managing_above(session, user_id, held)
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
    await refuse_managing_above(session, user_id, held)
    if role.name == ADMIN_ROLE and await is_last_admin(session, user_id):
        raise LastAdmin()
    note_users(session, [user_id])
    result = await session.execute(
        delete(user_roles).where(user_roles.c.user_id == user_id, user_roles.c.role_id == role.id),
        execution_options=NOTED,
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
    """Whether `user_id` is the only active admin, decided under a lock held until the
    caller's transaction ends, so two admins demoting, disabling or deleting each other at
    once cannot both pass: call it right before the change it guards, then commit."""
    # A write to the admin role row serialises every caller on every database: a row lock
    # on PostgreSQL and MySQL, the write lock on SQLite.
    # It changes nothing, so it invalidates no principal (NOTED with no user).
    await session.execute(
        update(Role).where(Role.name == ADMIN_ROLE).values(name=ADMIN_ROLE),
        execution_options=NOTED,
    )
    admins = list(
        await session.scalars(
            select(user_roles.c.user_id)
            .join(Role, Role.id == user_roles.c.role_id)
            .join(User, User.id == user_roles.c.user_id)
            .where(Role.name == ADMIN_ROLE, User.is_active.is_(True))
            # A locking read sees the latest commit under MySQL's repeatable read.
            .with_for_update()
        )
    )
    return admins == [user_id]
