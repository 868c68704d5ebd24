"""The rules of authentication: credentials, sessions, refresh rotation, passwords and resets."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import NoReturn

import structlog
from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..audit import service as audit
from ..config import Settings
from ..database import utcnow
from ..errors import Conflict, ProblemError, TooManyRequests, Unauthorized
from ..mailer import Message
from ..ratelimit import Policy, RateLimiter, account_key
from ..rbac import service as rbac_service
from ..rbac.permissions import USER_ROLE
from ..requests import RequestMeta
from ..users.models import User
from .identity import normalize_email
from .models import USER_AGENT_MAX_LENGTH, AuthSession, PasswordResetToken, RefreshToken
from .passwords import Match, PasswordService, policy_violation
from .principal_changes import NOTED, note_users
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
    audit_action = "auth.password_reset_refused"


class EmailTaken(Conflict):
    code = "email_taken"
    detail = "An account with this email already exists."


class RefreshSuperseded(Conflict):
    code = "refresh_token_superseded"
    detail = (
        "This refresh token was rotated a moment ago by a concurrent request; "
        "use the tokens that request received."
    )


class WeakPassword(ProblemError):
    status = 422
    code = "weak_password"


def require_policy(password: str, email: str) -> None:
    """The one password policy, with the account's email, for register, change and reset."""
    reason = policy_violation(password, email)
    if reason:
        raise WeakPassword(reason)


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
    require_policy(password, email)
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


def _credential_charges(
    limiter: RateLimiter, email: str, user: User | None, client_ip: str
) -> list[tuple[Policy, str]]:
    """What one password check costs: a unit of the strict account+client limit, of the
    looser per-account ceiling and of the per-client limit. The account's keys include its
    password generation, so a password reset or change starts its counters afresh."""
    generation = user.password_changed_at.isoformat() if user else "none"
    account = f"{account_key(email)}:{generation}"
    return [
        (limiter.login_failures, f"{account}:{client_ip}"),
        (limiter.login_failures_per_account, account),
        (limiter.login_failures_per_client, client_ip),
    ]


async def _check_password(
    passwords: PasswordService,
    limiter: RateLimiter,
    meta: RequestMeta,
    *,
    email: str,
    user: User | None,
    password: str,
) -> tuple[Match, list[tuple[Policy, str]]]:
    """Count the attempt, atomically and before the check, then check. The caller gives the
    units back (`limiter.refund`) when the attempt turns out legitimate."""
    charges = _credential_charges(limiter, email, user, meta.client_ip)
    refusal = await limiter.reserve(charges)
    if refusal is not None:
        raise TooManyRequests(refusal.reset_after, "Too many failed attempts; retry later.")
    if user is None:
        await passwords.verify_against_nothing(password)
        return Match.NO, charges
    return await passwords.match(user.password_hash, password), charges


async def _refund(limiter: RateLimiter, charges: list[tuple[Policy, str]]) -> None:
    for policy, key in charges:
        await limiter.refund(policy, key)


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
    user = await session.scalar(select(User).where(User.email == email))
    match, charges = await _check_password(
        passwords, limiter, meta, email=email, user=user, password=password
    )
    if match is Match.NO or user is None or not user.is_active:
        audit.record(
            session,
            meta,
            "auth.login",
            outcome="failure",
            actor_id=user.id if user else None,
            subject=email,
            reason="inactive" if match is not Match.NO else "bad_credentials",
        )
        await session.commit()
        raise InvalidCredentials()

    await _refund(limiter, charges)
    if match is Match.LEGACY or passwords.needs_rehash(user.password_hash):
        user.password_hash = await passwords.hash(password)
        logger.info("password_rehashed", user_id=str(user.id))
    audit.record(session, meta, "auth.login", actor_id=user.id, subject=email)
    return user


async def reauthenticate(
    session: AsyncSession,
    passwords: PasswordService,
    limiter: RateLimiter,
    meta: RequestMeta,
    user: User,
    password: str,
    *,
    purpose: str,
) -> None:
    """Confirm a sensitive action with the account's password, throttled and audited exactly
    like a login: a stolen access token must not become an oracle for the password."""
    match, charges = await _check_password(
        passwords, limiter, meta, email=user.email, user=user, password=password
    )
    if match is Match.NO:
        audit.record(
            session,
            meta,
            "auth.reauthentication",
            outcome="failure",
            actor_id=user.id,
            subject=str(user.id),
            purpose=purpose,
        )
        await session.commit()
        raise InvalidCredentials("The password is incorrect.")
    await _refund(limiter, charges)


async def _issue_pair(
    session: AsyncSession,
    settings: Settings,
    codec: AccessTokenCodec,
    auth_session: AuthSession,
    parent_id: uuid.UUID | None = None,
) -> TokenPair:
    """Store a new refresh token of the session, commit, and return it with an access token.
    No token outlives the session's absolute lifetime, however often it is rotated."""
    refresh_token = new_opaque_token()
    session_end = auth_session.created_at + timedelta(days=settings.session_max_age_days)
    session.add(
        RefreshToken(
            session_id=auth_session.id,
            parent_id=parent_id,
            token_hash=hash_opaque_token(refresh_token),
            expires_at=min(utcnow() + timedelta(days=settings.refresh_token_ttl_days), session_end),
        )
    )
    await session.commit()
    return TokenPair(
        access_token=codec.issue(auth_session.user_id, auth_session.id),
        refresh_token=refresh_token,
        expires_in=codec.ttl_seconds,
    )


async def _find_refresh_token(session: AsyncSession, refresh_token: str) -> RefreshToken | None:
    return await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_opaque_token(refresh_token))
    )


async def open_session(
    session: AsyncSession, meta: RequestMeta, user: User, *, mfa_verified: bool
) -> AuthSession:
    agent = meta.user_agent[:USER_AGENT_MAX_LENGTH] if meta.user_agent else None
    auth_session = AuthSession(
        user_id=user.id,
        created_at=utcnow(),
        mfa_verified=mfa_verified,
        client_ip=meta.client_ip,
        user_agent=agent,
    )
    session.add(auth_session)
    await session.flush()
    return auth_session


async def start_session(
    session: AsyncSession,
    settings: Settings,
    codec: AccessTokenCodec,
    meta: RequestMeta,
    user: User,
    *,
    mfa_verified: bool = False,
) -> TokenPair:
    auth_session = await open_session(session, meta, user, mfa_verified=mfa_verified)
    return await _issue_pair(session, settings, codec, auth_session)


async def complete_session(
    session: AsyncSession, settings: Settings, codec: AccessTokenCodec, auth_session: AuthSession
) -> TokenPair:
    """The first token pair of a session opened without one (an MFA enrolment session)."""
    return await _issue_pair(session, settings, codec, auth_session)


async def rotate(
    session: AsyncSession,
    settings: Settings,
    codec: AccessTokenCodec,
    meta: RequestMeta,
    refresh_token: str,
) -> TokenPair:
    """Exchange a refresh token for a new pair. A token presented twice is treated as stolen:
    its whole session (every token descended from the same login) is revoked, unless the
    second use comes within the grace window of the first and the new token is still unused,
    the signature of two tabs refreshing at once: that caller is told so (409) and nothing
    is issued or revoked."""
    stored = await _find_refresh_token(session, refresh_token)
    if stored is None:
        raise InvalidRefreshToken()
    auth_session = await session.get(AuthSession, stored.session_id)
    assert auth_session is not None  # the foreign key cascades
    user = await session.get(User, auth_session.user_id)
    if auth_session.revoked_at is not None or user is None or not user.is_active:
        raise InvalidRefreshToken()
    now = utcnow()
    session_end = auth_session.created_at + timedelta(days=settings.session_max_age_days)
    if stored.expires_at <= now or session_end <= now:
        raise InvalidRefreshToken()

    # One conditional UPDATE decides concurrent refreshes: exactly one sees rowcount == 1.
    claimed = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == stored.id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        token_id, session_id, user_id = stored.id, auth_session.id, user.id
        # A new transaction sees the winner's commit (MySQL's repeatable read included).
        await session.rollback()
        await _spent_token_presented(session, settings, meta, token_id, session_id, user_id)
    return await _issue_pair(session, settings, codec, auth_session, parent_id=stored.id)


async def _spent_token_presented(
    session: AsyncSession,
    settings: Settings,
    meta: RequestMeta,
    token_id: uuid.UUID,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
) -> NoReturn:
    """Answer the second use of a refresh token: 409 inside the grace window while its
    successor is unused, else revoke the family. Always raises."""
    used_at = await session.scalar(select(RefreshToken.used_at).where(RefreshToken.id == token_id))
    successor_used = await session.scalar(
        select(func.count())
        .select_from(RefreshToken)
        .where(RefreshToken.parent_id == token_id, RefreshToken.used_at.is_not(None))
    )
    grace = timedelta(seconds=settings.refresh_reuse_grace_seconds)
    if used_at is not None and utcnow() - used_at < grace and not successor_used:
        await session.rollback()
        raise RefreshSuperseded()
    await revoke_sessions(session, AuthSession.id == session_id, reason="refresh_reuse")
    audit.record(
        session,
        meta,
        "auth.refresh_reuse",
        outcome="failure",
        actor_id=user_id,
        subject=str(session_id),
    )
    await session.commit()
    logger.warning("refresh_token_reuse", user_id=str(user_id))
    raise InvalidRefreshToken()


async def revoke_sessions(session: AsyncSession, which: ColumnElement[bool], *, reason: str) -> int:
    """End the live sessions `which` selects; answers how many there were."""
    live = and_(which, AuthSession.revoked_at.is_(None))
    note_users(session, await session.scalars(select(AuthSession.user_id).where(live).distinct()))
    result = await session.execute(
        update(AuthSession).where(live).values(revoked_at=utcnow(), revoked_reason=reason),
        execution_options=NOTED,
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def revoke_all_sessions(session: AsyncSession, user_id: uuid.UUID, *, reason: str) -> int:
    """End every live session of the user; answers how many there were."""
    note_users(session, [user_id])  # a session opened after the UPDATE's snapshot too
    return await revoke_sessions(session, AuthSession.user_id == user_id, reason=reason)


async def revoke_other_sessions(
    session: AsyncSession, user_id: uuid.UUID, keep: uuid.UUID, *, reason: str
) -> int:
    note_users(session, [user_id])
    return await revoke_sessions(
        session, and_(AuthSession.user_id == user_id, AuthSession.id != keep), reason=reason
    )


async def logout(session: AsyncSession, meta: RequestMeta, refresh_token: str) -> None:
    """End the session the token belongs to. Unknown tokens are ignored: logout is idempotent."""
    stored = await _find_refresh_token(session, refresh_token)
    if stored is None:
        return
    await revoke_sessions(session, AuthSession.id == stored.session_id, reason="logout")
    audit.record(session, meta, "auth.logout", subject=str(stored.session_id))
    await session.commit()


async def logout_all(session: AsyncSession, meta: RequestMeta, user_id: uuid.UUID) -> None:
    await revoke_all_sessions(session, user_id, reason="logout_all")
    audit.record(session, meta, "auth.logout_all", actor_id=user_id, subject=str(user_id))
    await session.commit()


async def change_password(
    session: AsyncSession,
    passwords: PasswordService,
    limiter: RateLimiter,
    meta: RequestMeta,
    user: User,
    *,
    current_password: str,
    new_password: str,
) -> None:
    await reauthenticate(
        session, passwords, limiter, meta, user, current_password, purpose="password_change"
    )
    require_policy(new_password, user.email)
    await _set_password(session, passwords, user, new_password, reason="password_change")
    audit.record(session, meta, "auth.password_change", actor_id=user.id, subject=str(user.id))
    await session.commit()


async def _set_password(
    session: AsyncSession, passwords: PasswordService, user: User, password: str, *, reason: str
) -> None:
    """Store a new password: every session ends, every outstanding reset token dies, and the
    credential counters start afresh (they are keyed by `password_changed_at`)."""
    user.password_hash = await passwords.hash(password)
    user.password_changed_at = utcnow()
    await revoke_all_sessions(session, user.id, reason=reason)
    await _void_reset_tokens(session, user.id)


async def _void_reset_tokens(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user_id, PasswordResetToken.used_at.is_(None))
        .values(used_at=utcnow())
    )


async def request_password_reset(
    session: AsyncSession,
    settings: Settings,
    limiter: RateLimiter,
    meta: RequestMeta,
    email: str,
) -> Message | None:
    """Create a reset token and the message that carries it, when an active account exists
    and its mail budget (`RATE_LIMIT_PASSWORD_RESET_MAILS`) allows. A new token voids the
    account's earlier ones."""
    email = normalize_email(email)
    user = await session.scalar(select(User).where(User.email == email))
    if user is None or not user.is_active:
        return None
    if not await limiter.within_budget(limiter.password_reset_mails, account_key(email)):
        logger.warning("password_reset_mail_over_budget", user_id=str(user.id))
        return None
    await _void_reset_tokens(session, user.id)
    token, now = new_opaque_token(), utcnow()
    session.add(
        PasswordResetToken(
            user_id=user.id,
            token_hash=hash_opaque_token(token),
            created_at=now,
            expires_at=now + timedelta(minutes=settings.password_reset_ttl_minutes),
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
    user = await session.get(User, stored.user_id) if stored else None
    if (
        stored is None
        or user is None
        or not user.is_active
        or stored.used_at is not None
        or stored.expires_at <= now
        or stored.created_at < user.password_changed_at  # issued before the last change
    ):
        raise InvalidResetToken()
    require_policy(new_password, user.email)
    claimed = await session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.id == stored.id, PasswordResetToken.used_at.is_(None))
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise InvalidResetToken()
    await _set_password(session, passwords, user, new_password, reason="password_reset")
    if user.email_verified_at is None:  # the mailed token proves the address is theirs
        user.email_verified_at = now
    audit.record(session, meta, "auth.password_reset", actor_id=user.id, subject=str(user.id))
    await session.commit()
