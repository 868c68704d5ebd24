"""Facts about the current request that services record (audit trail, throttling keys)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request


@dataclass(frozen=True, slots=True)
class RequestMeta:
    client_ip: str
    request_id: str | None  # made by the server, whatever the client sent
    client_request_id: str | None = None  # the client's well-formed X-Request-ID, if any
    user_agent: str | None = None  # shown in the caller's list of sessions


# Dependencies here and in other modules are `async def` on purpose: FastAPI runs a plain `def`
# dependency in a worker thread, a hop that costs more than the work it does.
async def get_request_meta(request: Request) -> RequestMeta:
    client = request.client
    state = request.scope.get("state", {})
    request_id = state.get("request_id")
    server_id = state.get("server_request_id", request_id)
    return RequestMeta(
        client_ip=client.host if client else "unknown",
        request_id=server_id,
        client_request_id=request_id if request_id != server_id else None,
        user_agent=request.headers.get("user-agent"),
    )


RequestMetaDep = Annotated[RequestMeta, Depends(get_request_meta)]
