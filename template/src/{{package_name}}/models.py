"""Every table of the service, imported in one place for Alembic and the test harness."""

from . import features
from .audit.models import AuditEvent
from .auth.models import AuthSession, PasswordResetToken, RefreshToken
from .database import Base
from .features import MODEL_MODULES
from .rbac.models import Permission, Role, role_permissions, user_roles
from .users.models import User

__all__ = [
    "MODEL_MODULES",
    "AuditEvent",
    "AuthSession",
    "Base",
    "PasswordResetToken",
    "Permission",
    "RefreshToken",
    "Role",
    "User",
    "features",
    "role_permissions",
    "user_roles",
]
