"""Creating the first admin from the command line; there are no default accounts."""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

from ..auth.passwords import MAX_LENGTH, MIN_LENGTH, PasswordService, policy_violation
from ..auth.schemas import Email
from ..auth.service import normalize_email
from ..config import Settings
from ..database import create_engine, create_sessionmaker
from ..rbac import service as rbac_service
from ..rbac.permissions import ADMIN_ROLE, USER_ROLE
from .models import User


class AdminSetupError(Exception):
    pass


async def ensure_admin(settings: Settings, email: str, password: str) -> bool:
    """Create the admin (True), or give an existing account the admin role (False)."""
    try:
        email = normalize_email(TypeAdapter(Email).validate_python(email))
    except ValidationError:
        raise AdminSetupError(f"not a valid email address: {email!r}") from None
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise AdminSetupError(f"the password must have {MIN_LENGTH} to {MAX_LENGTH} characters")
    reason = policy_violation(password, email)
    if reason:
        raise AdminSetupError(reason)

    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            user = await session.scalar(select(User).where(User.email == email))
            created = user is None
            if user is None:
                passwords = PasswordService(concurrency=1)
                user = User(email=email, password_hash=await passwords.hash(password))
                session.add(user)
                await session.flush()
                await rbac_service.grant_role(session, user.id, USER_ROLE)
            await rbac_service.grant_role(session, user.id, ADMIN_ROLE)
            await session.commit()
            return created
    finally:
        await engine.dispose()
