"""The rules of accounts: reading, updating, disabling, exporting and deleting users."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from ..audit import service as audit
from ..audit.models import AuditEvent
from ..auth import service as auth_service
from ..auth.identity import normalize_email
from ..auth.models import AuthSession
from ..auth.passwords import PasswordService
from ..auth.principal_cache import PrincipalUser
from ..auth.principal_changes import NOTED, note_users
from ..errors import Conflict, NotFound
from ..ratelimit import RateLimiter
from ..rbac import service as rbac_service
from ..requests import RequestMeta
from .models import User
from .schemas import AccountExport, SessionOut, UserOut


class UserNotFound(NotFound):
    code = "user_not_found"
    detail = "The user does not exist."


def to_out(user: User | PrincipalUser, roles: list[str] | None = None) -> UserOut:
    """The public view of `user` (a row, or the principal's snapshot); `roles` saves loading
    the role objects of a row when names suffice."""
    if roles is None:
        if isinstance(user, PrincipalUser):
            roles = list(user.roles)
        else:
            roles = [role.name for role in user.roles]
    return UserOut(
        id=user.id,
        email=user.email,
        full_name=user.full_name,
        is_active=user.is_active,
        email_verified=user.email_verified_at is not None,
        created_at=user.created_at,
        roles=roles,
    )


def profile(user: PrincipalUser) -> UserOut:
    """The caller's own view, from the principal: no database round trip."""
    return to_out(user)


async def get(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.scalar(
        select(User).options(selectinload(User.roles)).where(User.id == user_id)
    )
    if user is None:
        raise UserNotFound()
    return user


async def page(
    session: AsyncSession, *, limit: int, offset: int, email: str | None = None
) -> tuple[list[User], int]:
    query = select(User)
    if email:
        query = query.where(User.email.contains(normalize_email(email), autoescape=True))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    users = await session.scalars(
        query.options(selectinload(User.roles))
        .order_by(User.created_at, User.id)
        .limit(limit)
        .offset(offset)
    )
    return list(users), total or 0


async def update_profile(
    session: AsyncSession, meta: RequestMeta, user_id: uuid.UUID, *, full_name: str | None
) -> User:
    user = await get(session, user_id)
    if full_name is not None:
        user.full_name = full_name
        audit.record(session, meta, "user.updated", actor_id=user_id, subject=str(user_id))
        await session.commit()
    return user


async def admin_update(
    session: AsyncSession,
    meta: RequestMeta,
    actor_id: uuid.UUID,
    held: frozenset[str],
    user_id: uuid.UUID,
    *,
    full_name: str | None,
    is_active: bool | None,
) -> User:
    """Edit or disable a user. Nobody manages an account more privileged than their own."""
    user = await get(session, user_id)
    await rbac_service.refuse_managing_above(session, user_id, held)
    changes: dict[str, Any] = {}
    if full_name is not None:
        user.full_name = full_name
        changes["full_name"] = full_name
    if is_active is not None and is_active != user.is_active:
        if not is_active and user_id == actor_id:
            raise Conflict("You cannot disable your own account.")
        if not is_active and await rbac_service.is_last_admin(session, user_id):
            raise rbac_service.LastAdmin("The last active admin cannot be disabled.")
        user.is_active = is_active
        changes["is_active"] = is_active
        if not is_active:
            await auth_service.revoke_all_sessions(session, user_id, reason="disabled")
    if changes:
        action = "user.disabled" if changes.get("is_active") is False else "user.updated"
        audit.record(session, meta, action, actor_id=actor_id, subject=str(user_id), **changes)
        await session.commit()
    return user


async def end_sessions(
    session: AsyncSession,
    meta: RequestMeta,
    actor_id: uuid.UUID,
    held: frozenset[str],
    user_id: uuid.UUID,
) -> int:
    """End every session of a user (a lost device, a suspected compromise). Nobody ends the
    sessions of an account more privileged than their own."""
    await get(session, user_id)
    await rbac_service.refuse_managing_above(session, user_id, held)
    ended = await auth_service.revoke_all_sessions(session, user_id, reason="ended_by_admin")
    audit.record(
        session, meta, "auth.sessions_ended", actor_id=actor_id, subject=str(user_id), ended=ended
    )
    await session.commit()
    return ended


async def export(
    session: AsyncSession, user_id: uuid.UUID, permissions: frozenset[str]
) -> AccountExport:
    user = await get(session, user_id)
    sessions = await session.scalars(
        select(AuthSession).where(AuthSession.user_id == user_id).order_by(AuthSession.created_at)
    )
    events = await session.scalars(
        select(AuditEvent)
        .where(or_(AuditEvent.actor_id == user_id, AuditEvent.subject == str(user_id)))
        .order_by(AuditEvent.created_at)
    )
    return AccountExport(
        user=to_out(user),
        permissions=sorted(permissions),
        sessions=[SessionOut.model_validate(item) for item in sessions],
        # Only the user's own data: the address of whoever acted on them (an admin) is not.
        audit_events=[
            {
                "created_at": event.created_at.isoformat(),
                "action": event.action,
                "outcome": event.outcome,
                "client_ip": event.client_ip if event.actor_id == user_id else None,
            }
            for event in events
        ],
    )


async def delete_account(
    session: AsyncSession,
    passwords: PasswordService,
    limiter: RateLimiter,
    meta: RequestMeta,
    user: User,
    *,
    password: str,
) -> None:
    """Erase the account and everything that cascades from it; the audit trail keeps its
    events under the user's id, pseudonymised: no email, address or details."""
    await auth_service.reauthenticate(
        session, passwords, limiter, meta, user, password, purpose="account_deletion"
    )
    if await rbac_service.is_last_admin(session, user.id):
        raise rbac_service.LastAdmin("The last active admin cannot delete their account.")
    user_id = user.id
    await audit.pseudonymise(session, user_id, user.email)
    note_users(session, [user_id])
    # The database cascades.
    await session.execute(delete(User).where(User.id == user_id), execution_options=NOTED)
    event = audit.record(session, meta, "user.deleted", subject=str(user_id))
    event.client_ip = event.client_request_id = None  # nothing personal outlives the account
    await session.commit()
