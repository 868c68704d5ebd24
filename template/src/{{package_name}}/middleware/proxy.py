"""The real client address, taken from forwarding headers only when a trusted proxy sent them."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


class ClientIPMiddleware:
    """Rewrites `scope["client"]` from `X-Forwarded-For` and `scope["scheme"]` from
    `X-Forwarded-Proto` when the direct peer is in `trusted_proxies`. The address chosen is the
    right-most one that is not itself a trusted proxy, so a client cannot prepend a forged one."""

    def __init__(self, app: ASGIApp, trusted_proxies: Iterable[str]) -> None:
        self.app = app
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in trusted_proxies
        )

    def _trusted(self, address: str) -> bool:
        ip = _parse_ip(address)
        return ip is not None and any(ip in network for network in self.networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.networks:
            client = scope.get("client")
            if client and self._trusted(client[0]):
                headers = dict(scope["headers"])
                forwarded = headers.get(b"x-forwarded-for", b"").decode("latin-1")
                hops = [part.strip() for part in forwarded.split(",") if part.strip()]
                for hop in reversed(hops):
                    if _parse_ip(hop) is None:
                        break  # garbage: keep the last good address rather than trust it
                    scope["client"] = (hop, 0)
                    if not self._trusted(hop):
                        break
                proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1").strip().lower()
                if proto in ("http", "https"):
                    scope["scheme"] = proto
        await self.app(scope, receive, send)
