"""URL paths shared by routers and middleware."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

API_PREFIX = "/api/v1"
HEALTH_PATHS = ("/health/live", "/health/ready")


def iter_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route of an app, flattening included routers (newer FastAPI keeps them nested)."""
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from iter_routes(nested.routes)
        else:
            yield route
