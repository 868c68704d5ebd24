"""The rules of authentication: credentials, sessions, refresh rotation, passwords and resets."""

from __future__ import annotations

import uuid
from datetime import timedelta

import structlog
from sqlalchemy import ColumnElement, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..audit import service as audit
from ..config import Settings
from ..database import utcnow
from ..errors import Conflict, TooManyRequests, Unauthorized
from ..mailer import Message
from ..ratelimit import RateLimiter, account_key
from ..rbac import service as rbac_service
from ..rbac.permissions import USER_ROLE
from ..requests import RequestMeta
from ..users.models import User
from .models import AuthSession, PasswordResetToken, RefreshToken
from .passwords import PasswordService
from .schemas import TokenPair
from .tokens import AccessTokenCodec, hash_opaque_token, new_opaque_token

logger = structlog.get_logger(__name__)


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    detail = "The email or password is incorrect."


class InvalidRefreshToken(Unauthorized):
    code = "invalid_refresh_token"
    detail = "The refresh token is invalid, expired or already used."


class InvalidResetToken(Unauthorized):
    code = "invalid_reset_token"
    detail = "The reset token is invalid, expired or already used."


class EmailTaken(Conflict):
    code = "email_taken"
    detail = "An account with this email already exists."


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def register(
    session: AsyncSession,
    passwords: PasswordService,
    meta: RequestMeta,
    *,
    email: str,
    password: str,
    full_name: str,
) -> User:
    email = normalize_email(email)
    if await session.scalar(select(User.id).where(User.email == email)):
        raise EmailTaken()
    user = User(email=email, full_name=full_name, password_hash=await passwords.hash(password))
    session.add(user)
    try:
        await session.flush()  # the unique constraint, not the check above, settles races
    except IntegrityError:
        await session.rollback()
        raise EmailTaken() from None
    await rbac_service.grant_role(session, user.id, USER_ROLE)
    audit.record(session, meta, "user.registered", actor_id=user.id, subject=str(user.id))
    await session.commit()
    return user


async def authenticate(
    session: AsyncSession,
    passwords: PasswordService,
    limiter: RateLimiter,
    meta: RequestMeta,
    *,
    email: str,
    password: str,
) -> User:
    """The active user with these credentials. Every failure looks and takes the same."""
    email = normalize_email(email)
    account = account_key(email)
    for policy, key in (
        (limiter.login_failures, account),
        (limiter.login_failures_per_client, meta.client_ip),
    ):
        refusal = await limiter.exhausted(policy, key)
        if refusal is not None:
            raise TooManyRequests(refusal.reset_after, "Too many failed logins; retry later.")

    user = await session.scalar(select(User).where(User.email == email))
    if user is None:
        await passwords.verify_against_nothing(password)
        valid = False
    else:
        valid = await passwords.verify(user.password_hash, password)

    if not valid or user is None or not user.is_active:
        await limiter.hit(limiter.login_failures, account)
        await limiter.hit(limiter.login_failures_per_client, meta.client_ip)
        audit.record(
            session,
            meta,
            "auth.login",
            outcome="failure",
            actor_id=user.id if user else None,
            subject=email,
            reason="inactive" if valid else "bad_credentials",
        )
        await session.commit()
        raise InvalidCredentials()

    if passwords.needs_rehash(user.password_hash):
        user.password_hash = await passwords.hash(password)
        logger.info("password_rehashed", user_id=str(user.id))
    audit.record(session, meta, "auth.login", actor_id=user.id, subject=email)
    return user


async def _issue_pair(
    session: AsyncSession,
    settings: Settings,
    codec: AccessTokenCodec,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
) -> TokenPair:
    """Store a new refresh token of the session, commit, and return it with an access token."""
    refresh_token = new_opaque_token()
    session.add(
        RefreshToken(
            session_id=session_id,
            token_hash=hash_opaque_token(refresh_token),
            expires_at=utcnow() + timedelta(days=settings.refresh_token_ttl_days),
        )
    )
    await session.commit()
    return TokenPair(
        access_token=codec.issue(user_id, session_id),
        refresh_token=refresh_token,
        expires_in=codec.ttl_seconds,
    )


async def _find_refresh_token(session: AsyncSession, refresh_token: str) -> RefreshToken | None:
    return await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_opaque_token(refresh_token))
    )


async def start_session(
    session: AsyncSession, settings: Settings, codec: AccessTokenCodec, user: User
) -> TokenPair:
    auth_session = AuthSession(user_id=user.id)
    session.add(auth_session)
    await session.flush()
    return await _issue_pair(session, settings, codec, user.id, auth_session.id)


async def rotate(
    session: AsyncSession,
    settings: Settings,
    codec: AccessTokenCodec,
    meta: RequestMeta,
    refresh_token: str,
) -> TokenPair:
    """Exchange a refresh token for a new pair. A token presented twice is treated as stolen:
    its whole session (every token descended from the same login) is revoked."""
    stored = await _find_refresh_token(session, refresh_token)
    if stored is None:
        raise InvalidRefreshToken()
    auth_session = await session.get(AuthSession, stored.session_id)
    assert auth_session is not None  # the foreign key cascades
    user = await session.get(User, auth_session.user_id)
    if auth_session.revoked_at is not None or user is None or not user.is_active:
        raise InvalidRefreshToken()

    now = utcnow()
    # One conditional UPDATE decides concurrent refreshes: exactly one sees rowcount == 1.
    claimed = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == stored.id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        await _revoke(session, AuthSession.id == auth_session.id, reason="refresh_reuse")
        audit.record(
            session,
            meta,
            "auth.refresh_reuse",
            outcome="failure",
            actor_id=user.id,
            subject=str(auth_session.id),
        )
        await session.commit()
        logger.warning("refresh_token_reuse", user_id=str(user.id))
        raise InvalidRefreshToken()
    if stored.expires_at <= now:
        await session.rollback()
        raise InvalidRefreshToken()

    return await _issue_pair(session, settings, codec, user.id, auth_session.id)


async def _revoke(session: AsyncSession, which: ColumnElement[bool], *, reason: str) -> None:
    await session.execute(
        update(AuthSession)
        .where(which, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )


async def revoke_all_sessions(session: AsyncSession, user_id: uuid.UUID, *, reason: str) -> None:
    await _revoke(session, AuthSession.user_id == user_id, reason=reason)


async def logout(session: AsyncSession, meta: RequestMeta, refresh_token: str) -> None:
    """End the session the token belongs to. Unknown tokens are ignored: logout is idempotent."""
    stored = await _find_refresh_token(session, refresh_token)
    if stored is None:
        return
    await _revoke(session, AuthSession.id == stored.session_id, reason="logout")
    audit.record(session, meta, "auth.logout", subject=str(stored.session_id))
    await session.commit()


async def logout_all(session: AsyncSession, meta: RequestMeta, user: User) -> None:
    await revoke_all_sessions(session, user.id, reason="logout_all")
    audit.record(session, meta, "auth.logout_all", actor_id=user.id, subject=str(user.id))
    await session.commit()


async def change_password(
    session: AsyncSession,
    passwords: PasswordService,
    meta: RequestMeta,
    user: User,
    *,
    current_password: str,
    new_password: str,
) -> None:
    if not await passwords.verify(user.password_hash, current_password):
        audit.record(
            session,
            meta,
            "auth.password_change",
            outcome="failure",
            actor_id=user.id,
            subject=str(user.id),
        )
        await session.commit()
        raise InvalidCredentials("The current password is incorrect.")
    await _set_password(session, passwords, user, new_password, reason="password_change")
    audit.record(session, meta, "auth.password_change", actor_id=user.id, subject=str(user.id))
    await session.commit()


async def _set_password(
    session: AsyncSession, passwords: PasswordService, user: User, password: str, *, reason: str
) -> None:
    user.password_hash = await passwords.hash(password)
    user.password_changed_at = utcnow()
    await revoke_all_sessions(session, user.id, reason=reason)


async def request_password_reset(
    session: AsyncSession, settings: Settings, meta: RequestMeta, email: str
) -> Message | None:
    """Create a reset token and the message that carries it, when an active account exists."""
    email = normalize_email(email)
    user = await session.scalar(select(User).where(User.email == email))
    if user is None or not user.is_active:
        return None
    token = new_opaque_token()
    session.add(
        PasswordResetToken(
            user_id=user.id,
            token_hash=hash_opaque_token(token),
            expires_at=utcnow() + timedelta(minutes=settings.password_reset_ttl_minutes),
        )
    )
    audit.record(session, meta, "auth.password_reset_requested", actor_id=user.id, subject=email)
    await session.commit()
    return Message(
        to=user.email,
        subject="Reset your password",
        body=(
            "Someone asked to reset the password of this account. If it was you, use this token "
            f"within {settings.password_reset_ttl_minutes} minutes:\n\n{token}\n\n"
            f"POST {settings.public_base_url}/api/v1/auth/password/reset\n\n"
            "If it was not you, ignore this message: your password stays as it is."
        ),
    )


async def reset_password(
    session: AsyncSession,
    passwords: PasswordService,
    meta: RequestMeta,
    *,
    token: str,
    new_password: str,
) -> None:
    now = utcnow()
    stored = await session.scalar(
        select(PasswordResetToken).where(PasswordResetToken.token_hash == hash_opaque_token(token))
    )
    if stored is None or stored.used_at is not None or stored.expires_at <= now:
        raise InvalidResetToken()
    claimed = await session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.id == stored.id, PasswordResetToken.used_at.is_(None))
        .values(used_at=now)
    )
    user = await session.get(User, stored.user_id)
    if claimed.rowcount != 1 or user is None or not user.is_active:  # type: ignore[attr-defined]
        await session.rollback()
        raise InvalidResetToken()
    await _set_password(session, passwords, user, new_password, reason="password_reset")
    audit.record(session, meta, "auth.password_reset", actor_id=user.id, subject=str(user.id))
    await session.commit()
