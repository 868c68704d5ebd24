"""Login sessions, their rotating refresh tokens, password-reset and email-verification tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, false
from sqlalchemy.orm import Mapped, mapped_column

from ..database import Base, UTCDateTime, utcnow

TOKEN_HASH_LENGTH = 64  # hex SHA-256
CLIENT_IP_MAX_LENGTH = 45  # an IPv6 address in text
USER_AGENT_MAX_LENGTH = 200


class AuthSession(Base):
    """One login: the family every rotated refresh token and access token of it belongs to."""

    __tablename__ = "auth_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    # Whether the login passed a second factor: a session without it is refused everywhere
    # but MFA enrolment when one of the user's roles requires MFA (MFA_REQUIRED_ROLES).
    mfa_verified: Mapped[bool] = mapped_column(default=False, server_default=false())
    # What the user sees in their list of sessions to recognise a device.
    client_ip: Mapped[str | None] = mapped_column(String(CLIENT_IP_MAX_LENGTH), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX_LENGTH), default=None)


class _SingleUseToken:
    """Columns of a random token kept only as its hash: issued, expiring, and spent once."""

    token_hash: Mapped[str] = mapped_column(String(TOKEN_HASH_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class RefreshToken(_SingleUseToken, Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    # The token this one was issued in exchange for: once a successor is used, presenting its
    # parent again is theft, grace window or not.
    parent_id: Mapped[uuid.UUID | None] = mapped_column(default=None, index=True)


class PasswordResetToken(_SingleUseToken, Base):
    __tablename__ = "password_reset_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )


class EmailVerificationToken(_SingleUseToken, Base):
    __tablename__ = "email_verification_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
