"""The route guard: `RequirePermissions(...)` admits a principal holding every listed permission."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends

from ..auth.dependencies import (
    Principal,
    get_enrolling_principal,
    get_fresh_principal,
    get_principal,
)
from ..errors import Forbidden


class AccessDenied(Forbidden):
    audit_action = "access.denied"  # recorded, within the caller's budget, by the handler


class RequirePermissions:
    """A dependency that authenticates the caller and checks their permissions.

    The instance keeps its permission list so the route class can publish it in OpenAPI and
    the route-walk test can prove every non-public route is guarded. A refusal is audited.
    """

    def __init__(self, *permissions: StrEnum) -> None:
        if not permissions:
            raise ValueError("a guard needs at least one permission")
        self.permissions = frozenset(str(permission) for permission in permissions)

    async def __call__(self, principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        missing = self.permissions - principal.permissions
        if missing:
            raise AccessDenied(audit_details={"missing": sorted(missing)})
        return principal


class RequirePermissionsWhileEnrolling(RequirePermissions):
    """The guard of the MFA enrolment routes: also admits a session that owes MFA enrolment."""

    async def __call__(
        self, principal: Annotated[Principal, Depends(get_enrolling_principal)]
    ) -> Principal:
        return await super().__call__(principal)


class RequireFreshPermissions(RequirePermissions):
    """The guard of routes that change privileges: the caller's permissions are read from the
    database, not from the principal cache (see `get_fresh_principal`)."""

    async def __call__(
        self, principal: Annotated[Principal, Depends(get_fresh_principal)]
    ) -> Principal:
        return await super().__call__(principal)


def Guard(  # noqa: N802
    *permissions: StrEnum, while_enrolling_mfa: bool = False, fresh: bool = False
) -> Any:
    """`principal: Annotated[Principal, Guard(Perm.X)]` — authenticate, then require `X`;
    `fresh=True` on a route that grants, takes or edits privileges or accounts.
    (Named like the `Depends` it returns.)"""
    guard = RequirePermissions
    if while_enrolling_mfa:
        guard = RequirePermissionsWhileEnrolling
    elif fresh:
        guard = RequireFreshPermissions
    return Depends(guard(*permissions))
