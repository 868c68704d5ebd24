"""The sessions a user can see and end: their live logins, each with its device and address."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..audit import service as audit
from ..config import Settings
from ..database import utcnow
from ..errors import NotFound
from ..requests import RequestMeta
from .models import AuthSession, RefreshToken
from .schemas import SessionInfo
from .service import revoke_sessions


class SessionNotFound(NotFound):
    code = "session_not_found"
    detail = "You have no live session with this id."


async def live_sessions(
    session: AsyncSession, settings: Settings, user_id: uuid.UUID, current: uuid.UUID
) -> list[SessionInfo]:
    """Sessions not ended and within their absolute lifetime that can still be used: by an
    unused, unexpired refresh token, or (a session opened only to enrol MFA) an access token."""
    now = utcnow()
    usable_refresh = exists().where(
        RefreshToken.session_id == AuthSession.id,
        RefreshToken.used_at.is_(None),
        RefreshToken.expires_at > now,
    )
    rows = await session.scalars(
        select(AuthSession)
        .where(
            AuthSession.user_id == user_id,
            AuthSession.revoked_at.is_(None),
            AuthSession.created_at > now - timedelta(days=settings.session_max_age_days),
            or_(
                usable_refresh,
                AuthSession.created_at > now - timedelta(seconds=settings.access_token_ttl_seconds),
            ),
        )
        .order_by(AuthSession.created_at.desc(), AuthSession.id)
    )
    max_age = timedelta(days=settings.session_max_age_days)
    return [
        SessionInfo(
            id=row.id,
            created_at=row.created_at,
            expires_at=row.created_at + max_age,
            client_ip=row.client_ip,
            user_agent=row.user_agent,
            mfa=row.mfa_verified,
            current=row.id == current,
        )
        for row in rows
    ]


async def end_own_session(
    session: AsyncSession, meta: RequestMeta, user_id: uuid.UUID, session_id: uuid.UUID
) -> None:
    """End one of the caller's sessions (the current one included); its access tokens stop
    working at once. Someone else's session answers exactly like one that does not exist."""
    ended = await revoke_sessions(
        session,
        and_(AuthSession.id == session_id, AuthSession.user_id == user_id),
        reason="ended_by_user",
    )
    if not ended:
        raise SessionNotFound()
    audit.record(session, meta, "auth.session_ended", actor_id=user_id, subject=str(session_id))
    await session.commit()
