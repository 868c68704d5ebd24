"""Request and response bodies of the user endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import StrictBool

from ..auth.schemas import AnyPassword, FullName
from ..schemas import InputModel, OutputModel


class UserOut(OutputModel):
    id: uuid.UUID
    email: str
    full_name: str
    is_active: bool
    email_verified: bool
    created_at: datetime
    roles: list[str]


class ProfileUpdate(InputModel):
    """What a user may change about themselves. Roles and status are not here, by design."""

    full_name: FullName | None = None


class AdminUserUpdate(InputModel):
    full_name: FullName | None = None
    is_active: StrictBool | None = None  # 0, 1 or "no" are not a status


class AccountDeletion(InputModel):
    password: AnyPassword


class SessionOut(OutputModel):
    id: uuid.UUID
    created_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None


class AccountExport(OutputModel):
    user: UserOut
    permissions: list[str]
    sessions: list[SessionOut]
    audit_events: list[dict[str, Any]]
