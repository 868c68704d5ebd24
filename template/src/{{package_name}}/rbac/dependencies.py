"""The route guard: `RequirePermissions(...)` admits a principal holding every listed permission."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Request

from ..audit import service as audit
from ..auth.dependencies import Principal, get_principal
from ..database import SessionDep
from ..errors import Forbidden
from ..requests import RequestMetaDep


class RequirePermissions:
    """A dependency that authenticates the caller and checks their permissions.

    The instance keeps its permission list so the route class can publish it in OpenAPI and
    the route-walk test can prove every non-public route is guarded. A refusal is audited.
    """

    def __init__(self, *permissions: StrEnum) -> None:
        if not permissions:
            raise ValueError("a guard needs at least one permission")
        self.permissions = frozenset(str(permission) for permission in permissions)

    async def __call__(
        self,
        request: Request,
        principal: Annotated[Principal, Depends(get_principal)],
        session: SessionDep,
        meta: RequestMetaDep,
    ) -> Principal:
        missing = self.permissions - principal.permissions
        if missing:
            audit.record(
                session,
                meta,
                "access.denied",
                outcome="failure",
                actor_id=principal.user_id,
                subject=f"{request.method} {request.url.path}",
                missing=sorted(missing),
            )
            await session.commit()
            raise Forbidden()
        return principal


def Guard(*permissions: StrEnum) -> Any:  # noqa: N802 - reads like the Depends it returns
    """`principal: Annotated[Principal, Guard(Perm.X)]` — authenticate, then require `X`."""
    return Depends(RequirePermissions(*permissions))
