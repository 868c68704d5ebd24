"""Turn an unhandled exception into the 500 problem inside the middleware stack, so the error
response carries the security headers and `X-Request-ID`, and its log line the request id.

Starlette's own handler for `Exception` runs outside every user middleware: its response skips
their headers and its log line comes after the request context is gone.
"""

from __future__ import annotations

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..error_reporting import report
from ..errors import problem

logger = structlog.get_logger(__name__)


class ServerErrorMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            logger.exception("unhandled_error", path=scope.get("path"))
            report(error)
            if response_started:
                raise  # too late for a clean answer: the server closes the connection
            response = problem(500, "internal_error", "An unexpected error occurred.")
            await response(scope, receive, send)
