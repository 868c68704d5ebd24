"""Refuse requests whose Host header is not one of ours (DNS rebinding, cache poisoning)."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import problem


class TrustedHostMiddleware:
    """`allowed` holds exact names and `*.suffix` wildcards; `*` allows any host (development).
    Paths in `exempt_paths` (health probes, which kubelets send to the pod IP) are not checked."""

    def __init__(
        self, app: ASGIApp, allowed: Iterable[str], exempt_paths: Iterable[str] = ()
    ) -> None:
        self.app = app
        hosts = [host.lower() for host in allowed]
        self.allow_any = "*" in hosts
        self.exact = frozenset(host for host in hosts if not host.startswith("*."))
        self.suffixes = tuple(host[1:] for host in hosts if host.startswith("*."))
        self.exempt = frozenset(exempt_paths)

    def _allowed(self, host: str) -> bool:
        return self.allow_any or host in self.exact or host.endswith(self.suffixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        host = ""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1").lower()
                break
        # Strip the port: "[::1]:8000" → "[::1]", "example.com:443" → "example.com".
        host = host.partition("]")[0] + "]" if host.startswith("[") else host.partition(":")[0]
        if host and self._allowed(host):
            await self.app(scope, receive, send)
            return
        response = problem(400, "invalid_host", "The Host header is not allowed.")
        await response(scope, receive, send)
