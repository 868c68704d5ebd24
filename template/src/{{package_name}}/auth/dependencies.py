"""Who is calling: bearer token → verified claims → live session, active user, permissions
(from the principal cache, or the database when the cache cannot answer)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..config import Settings
from ..errors import Forbidden, Unauthorized
from ..mailer import Mailer
from ..ratelimit import RateLimiter
from ..rbac.models import Permission, Role, role_permissions, user_roles
from ..users.models import User
from .models import AuthSession
from .passwords import PasswordService
from .principal_cache import PrincipalCache, PrincipalRecord, PrincipalUser
from .tokens import AccessTokenCodec, InvalidToken
from .verification import EmailUnverified

bearer_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


@dataclass(frozen=True, slots=True)
class Principal:
    user: PrincipalUser
    session_id: uuid.UUID
    permissions: frozenset[str]
    # One of the user's roles requires MFA and this session did not pass it: the session may
    # only enrol (see get_enrolling_principal).
    mfa_pending: bool = False

    @property
    def user_id(self) -> uuid.UUID:
        return self.user.id


async def get_token_codec(request: Request) -> AccessTokenCodec:
    codec: AccessTokenCodec = request.app.state.token_codec
    return codec


async def get_password_service(request: Request) -> PasswordService:
    passwords: PasswordService = request.app.state.passwords
    return passwords


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


async def get_mailer(request: Request) -> Mailer:
    mailer: Mailer = request.app.state.mailer
    return mailer


TokenCodecDep = Annotated[AccessTokenCodec, Depends(get_token_codec)]
PasswordServiceDep = Annotated[PasswordService, Depends(get_password_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]
MailerDep = Annotated[Mailer, Depends(get_mailer)]


class MfaEnrolmentRequired(Forbidden):
    code = "mfa_enrolment_required"
    detail = (
        "Your role requires multi-factor authentication: log in again with your second factor, "
        "or enrol TOTP (POST /api/v1/auth/mfa/totp) if you have none."
    )


async def get_enrolling_principal(
    request: Request, token: Annotated[str | None, Depends(bearer_scheme)]
) -> Principal:
    """The caller, including one whose session may only enrol MFA (`mfa_pending`). Only the
    MFA enrolment routes use this directly; everything else goes through `get_principal`."""
    return await _principal(request, token, cached=True)


async def get_fresh_principal(
    request: Request, token: Annotated[str | None, Depends(bearer_scheme)]
) -> Principal:
    """The caller as the database knows them right now, never from the cache: the guard of
    routes that change privileges, so that no window in which another instance has not yet
    heard of a demotion lets the demoted caller grant the privilege back."""
    principal = await _principal(request, token, cached=False)
    if principal.mfa_pending:
        raise MfaEnrolmentRequired()
    return principal


async def _principal(request: Request, token: str | None, *, cached: bool) -> Principal:
    if not token:
        raise Unauthorized()
    # Read from the app directly: every guarded request runs this, and each dependency
    # FastAPI resolves costs microseconds.
    codec: AccessTokenCodec = request.app.state.token_codec
    settings: Settings = request.app.state.settings
    try:
        claims = codec.verify(token)
    except InvalidToken:
        raise Unauthorized("The access token is invalid or expired.") from None

    # Logout, disabling a user and role changes apply at once on every instance: the
    # database is the source of truth, and the cache in front of it is invalidated by every
    # change before the changing request returns (auth/principal_cache.py).
    cache: PrincipalCache = request.app.state.principal_cache
    record = cache.get(claims.session_id, claims.user_id) if cached else None
    if record is None:
        sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker

        async def load() -> PrincipalRecord | None:
            # A session of its own, opened only now: a cached request never creates one.
            async with sessionmaker() as session:
                return await load_principal(session, claims.session_id, claims.user_id)

        if cached:
            record = await cache.load_once(claims.session_id, claims.user_id, load)
        else:
            generation = cache.generation
            record = await load()
            if record is not None:
                cache.put(claims.session_id, record, generation)
        if record is None:
            raise Unauthorized("The session has ended.")
    if record.user.email_verified_at is None and not settings.unverified_accounts_may_log_in:
        # A session opened while UNVERIFIED_ACCOUNT_ACCESS was `full`, now `none`.
        raise EmailUnverified()
    request.state.user_id = str(claims.user_id)
    return Principal(
        user=record.user,
        session_id=claims.session_id,
        permissions=record.permissions,
        mfa_pending=not record.mfa_verified and bool(set(record.user.roles) & settings.mfa_roles),
    )


async def load_principal(
    session: AsyncSession, session_id: uuid.UUID, user_id: uuid.UUID
) -> PrincipalRecord | None:
    """The live session's user, MFA state, roles and permissions, in one query; None when the
    session has ended or the user is disabled."""
    rows = (
        await session.execute(
            select(
                User,
                AuthSession.revoked_at,
                AuthSession.mfa_verified,
                Role.name.label("role"),
                Permission.name.label("permission"),
            )
            .join(AuthSession, AuthSession.user_id == User.id)
            .outerjoin(user_roles, user_roles.c.user_id == User.id)
            .outerjoin(Role, Role.id == user_roles.c.role_id)
            .outerjoin(role_permissions, role_permissions.c.role_id == user_roles.c.role_id)
            .outerjoin(Permission, Permission.id == role_permissions.c.permission_id)
            .where(AuthSession.id == session_id, User.id == user_id)
        )
    ).all()
    if not rows or rows[0].revoked_at is not None or not rows[0].User.is_active:
        return None
    user: User = rows[0].User
    return PrincipalRecord(
        user=PrincipalUser(
            id=user.id,
            email=user.email,
            full_name=user.full_name,
            is_active=user.is_active,
            email_verified_at=user.email_verified_at,
            created_at=user.created_at,
            roles=tuple(sorted({row.role for row in rows if row.role is not None})),
        ),
        mfa_verified=rows[0].mfa_verified,
        permissions=frozenset(row.permission for row in rows if row.permission is not None),
    )


async def load_user(session: AsyncSession, principal: Principal) -> User:
    """The caller's row, for code that changes the account (the principal is a snapshot)."""
    user = await session.get(User, principal.user_id)
    if user is None:  # deleted by a concurrent request
        raise Unauthorized("The session has ended.")
    return user


async def get_principal(
    principal: Annotated[Principal, Depends(get_enrolling_principal)],
) -> Principal:
    """The caller, with a session that is complete: a session still owing MFA enrolment is
    refused here, so no route can forget the check."""
    if principal.mfa_pending:
        raise MfaEnrolmentRequired()
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
