"""Verified email: a single-use, expiring token (stored as its hash) mailed at registration and
on request; UNVERIFIED_ACCOUNT_ACCESS says whether an unverified account may log in."""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..audit import service as audit
from ..config import Settings
from ..database import utcnow
from ..errors import Forbidden, Unauthorized
from ..mailer import Message
from ..ratelimit import RateLimiter, account_key
from ..requests import RequestMeta
from ..users.models import User
from .identity import normalize_email
from .models import EmailVerificationToken
from .tokens import hash_opaque_token, new_opaque_token

logger = structlog.get_logger(__name__)


class InvalidVerificationToken(Unauthorized):
    code = "invalid_verification_token"
    detail = "The verification token is invalid, expired or already used."
    audit_action = "auth.email_verification_refused"


class EmailUnverified(Forbidden):
    code = "email_unverified"
    detail = (
        "Verify your email address first: use the token we mailed you, or ask for a new one "
        "(POST /api/v1/auth/email/verify/resend)."
    )


def require_verified(settings: Settings, user: User) -> None:
    if user.email_verified_at is None and not settings.unverified_accounts_may_log_in:
        raise EmailUnverified()


async def issue(session: AsyncSession, settings: Settings, user: User) -> Message:
    """A new token for `user` (voiding the unused ones), in the caller's transaction."""
    now = utcnow()
    await session.execute(
        update(EmailVerificationToken)
        .where(EmailVerificationToken.user_id == user.id, EmailVerificationToken.used_at.is_(None))
        .values(used_at=now)
    )
    token = new_opaque_token()
    hours = settings.email_verification_ttl_hours
    session.add(
        EmailVerificationToken(
            user_id=user.id,
            token_hash=hash_opaque_token(token),
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    return Message(
        to=user.email,
        subject="Verify your email address",
        body=(
            f"Confirm that this address is yours with this token within {hours} hours:\n\n"
            f"{token}\n\n"
            f"POST {settings.public_base_url}/api/v1/auth/email/verify\n\n"
            "If you did not create an account, ignore this message."
        ),
    )


async def verify(session: AsyncSession, meta: RequestMeta, token: str) -> None:
    now = utcnow()
    stored = await session.scalar(
        select(EmailVerificationToken).where(
            EmailVerificationToken.token_hash == hash_opaque_token(token)
        )
    )
    user = await session.get(User, stored.user_id) if stored else None
    if (
        stored is None
        or user is None
        or not user.is_active
        or user.email_verified_at is not None  # one use voids every other token
        or stored.used_at is not None
        or stored.expires_at <= now
    ):
        raise InvalidVerificationToken()
    claimed = await session.execute(
        update(EmailVerificationToken)
        .where(EmailVerificationToken.id == stored.id, EmailVerificationToken.used_at.is_(None))
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise InvalidVerificationToken()
    user.email_verified_at = now
    audit.record(session, meta, "auth.email_verified", actor_id=user.id, subject=str(user.id))
    await session.commit()


async def request_again(
    session: AsyncSession,
    settings: Settings,
    limiter: RateLimiter,
    meta: RequestMeta,
    email: str,
) -> Message | None:
    """A new verification mail for an active, unverified account, within the account's mail
    budget; None (and the same answer to the caller) otherwise."""
    email = normalize_email(email)
    user = await session.scalar(select(User).where(User.email == email))
    if user is None or not user.is_active or user.email_verified_at is not None:
        return None
    if not await limiter.within_budget(limiter.verification_mails, account_key(email)):
        logger.warning("verification_mail_over_budget", user_id=str(user.id))
        return None
    message = await issue(session, settings, user)
    audit.record(session, meta, "auth.email_verification_requested", actor_id=user.id)
    await session.commit()
    return message
