"""Creating the first admin from the command line; there are no default accounts."""

from __future__ import annotations

from enum import StrEnum

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

from ..audit import service as audit
from ..auth.identity import normalize_email
from ..auth.passwords import PasswordService, policy_violation
from ..auth.schemas import NewEmail
from ..config import Settings
from ..database import create_engine, create_sessionmaker, utcnow
from ..rbac import service as rbac_service
from ..rbac.permissions import ADMIN_ROLE, USER_ROLE
from .models import User


class AdminSetupError(Exception):
    pass


class AdminOutcome(StrEnum):
    CREATED = "admin created"
    PROMOTED = "admin role granted"
    ALREADY_ADMIN = "already an admin"


async def ensure_admin(
    settings: Settings, email: str, password: str, *, promote_existing: bool = False
) -> AdminOutcome:
    """Create an admin account. An existing account is promoted only when asked explicitly
    *and* the password given is its own: whoever registered an address first must not become
    admin because an operator typed that address. Every grant is audited."""
    try:
        email = normalize_email(TypeAdapter(NewEmail).validate_python(email))
    except ValidationError as error:
        reason = error.errors()[0]["msg"]
        raise AdminSetupError(f"not a usable email address: {email!r} ({reason})") from None

    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            passwords = PasswordService(concurrency=1)
            user = await session.scalar(select(User).where(User.email == email))
            if user is None:
                weakness = policy_violation(password, email)
                if weakness:
                    raise AdminSetupError(weakness)
                # The operator chose the address: it counts as verified.
                user = User(
                    email=email,
                    password_hash=await passwords.hash(password),
                    email_verified_at=utcnow(),
                )
                session.add(user)
                await session.flush()
                await rbac_service.grant_role(session, user.id, USER_ROLE)
                audit.record(session, None, "user.registered", actor_id=user.id, via="cli")
                outcome = AdminOutcome.CREATED
            elif not promote_existing:
                raise AdminSetupError(
                    "an account with this email already exists; to make it admin, run again "
                    "with --promote-existing and that account's password"
                )
            elif not await passwords.verify(user.password_hash, password):
                audit.record(
                    session,
                    None,
                    "rbac.role_assigned",
                    outcome="failure",
                    subject=str(user.id),
                    role=ADMIN_ROLE,
                    via="cli",
                    reason="bad_password",
                )
                await session.commit()
                raise AdminSetupError("the password is not this account's password")
            else:
                outcome = AdminOutcome.PROMOTED
            if await rbac_service.grant_role(session, user.id, ADMIN_ROLE):
                audit.record(
                    session,
                    None,
                    "rbac.role_assigned",
                    subject=str(user.id),
                    role=ADMIN_ROLE,
                    via="cli",
                )
            elif outcome is AdminOutcome.PROMOTED:
                outcome = AdminOutcome.ALREADY_ADMIN
            await session.commit()
            return outcome
    finally:
        await engine.dispose()
