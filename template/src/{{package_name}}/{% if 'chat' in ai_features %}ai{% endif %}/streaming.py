"""Server-sent events for a chat call: a client that goes away ends the call, exactly once."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from .service import ChatCall


class ChatEventStream(StreamingResponse):
    media_type = "text/event-stream"

    def __init__(self, call: ChatCall, events: AsyncGenerator[bytes, None]) -> None:
        super().__init__(events, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self.call = call
        self.events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette cancels the event generator when the client disconnects; the generator
        # then closes the provider's stream and settles. If it never started, close() does.
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.events.aclose()
                await self.call.close()
