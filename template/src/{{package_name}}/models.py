"""Every table of the service, imported in one place for Alembic and the test harness."""

from . import features
from .audit.models import AuditEvent
from .auth.models import AuthSession, EmailVerificationToken, PasswordResetToken, RefreshToken
from .database import Base
from .features import MODEL_MODULES
from .mfa.models import RecoveryCode, TotpCredential
from .rbac.models import Permission, Role, role_permissions, user_roles
from .users.models import User

__all__ = [
    "MODEL_MODULES",
    "AuditEvent",
    "AuthSession",
    "Base",
    "EmailVerificationToken",
    "PasswordResetToken",
    "Permission",
    "RecoveryCode",
    "RefreshToken",
    "Role",
    "TotpCredential",
    "User",
    "features",
    "role_permissions",
    "user_roles",
]
