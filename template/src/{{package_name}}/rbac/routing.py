"""A route class that publishes the permissions a route requires in its OpenAPI operation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from .dependencies import RequirePermissions


def required_permissions(dependant: Dependant) -> frozenset[str]:
    """Every permission demanded anywhere in the route's dependency tree."""

    def walk(node: Dependant) -> Iterator[str]:
        if isinstance(node.call, RequirePermissions):
            yield from node.call.permissions
        for child in node.dependencies:
            yield from walk(child)

    return frozenset(walk(dependant))


class GuardedRoute(APIRoute):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        permissions = sorted(required_permissions(self.dependant))
        if permissions:
            self.openapi_extra = {**(self.openapi_extra or {}), "x-permissions": permissions}
            note = "Requires permissions: " + ", ".join(f"`{p}`" for p in permissions) + "."
            self.description = f"{self.description}\n\n{note}".strip()
