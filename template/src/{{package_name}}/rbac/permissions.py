"""The permission catalogue and the built-in roles; the initial migration seeds exactly these."""

from __future__ import annotations

from enum import StrEnum


class Perm(StrEnum):
    ACCOUNT_READ = "account:read"
    ACCOUNT_UPDATE = "account:update"
    ACCOUNT_DELETE = "account:delete"
    ACCOUNT_EXPORT = "account:export"
    USERS_READ = "users:read"
    USERS_UPDATE = "users:update"
    ROLES_READ = "roles:read"
    ROLES_WRITE = "roles:write"
    ROLES_ASSIGN = "roles:assign"
    PERMISSIONS_READ = "permissions:read"
    AUDIT_READ = "audit:read"


ADMIN_ROLE = "admin"
USER_ROLE = "user"

SELF_SERVICE = frozenset(
    {Perm.ACCOUNT_READ, Perm.ACCOUNT_UPDATE, Perm.ACCOUNT_DELETE, Perm.ACCOUNT_EXPORT}
)
