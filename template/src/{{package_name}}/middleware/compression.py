"""Gzip for the clients that ask for it, and no work at all for those that do not."""

from __future__ import annotations

from starlette.middleware import gzip
from starlette.types import Receive, Scope, Send


class GZipMiddleware(gzip.GZipMiddleware):
    """Starlette's, minus its pass over every response to a client that does not accept gzip:
    it only adds `Vary: Accept-Encoding` to the large ones, which tells caches not to serve
    them to clients that do. Such a cache would send those clients an uncompressed copy
    (compressed responses still carry `Vary`), and API responses are `no-store` anyway."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not any(
            name == b"accept-encoding" and b"gzip" in value for name, value in scope["headers"]
        ):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
