"""The HTTP server: uvicorn with the h11 parser, bounded request heads and a deadline to send
them, so neither a header bomb nor a slow sender can exhaust memory or connections.

uvicorn's default parser (httptools) buffers a request line and headers of any size; h11 stops
at `SERVER_MAX_HEADER_BYTES` and uvicorn answers 400 and closes the connection. uvicorn has no
deadline for a request head that trickles in, which `HeadTimeoutH11Protocol` adds.
"""

from __future__ import annotations

import asyncio
import ctypes
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeadTimeoutH11Protocol(H11Protocol):
    """Closes a connection whose request line and headers take longer than the configured
    `head_timeout_seconds` to arrive, counted from the first byte of each request (the idle wait
    before it is uvicorn's keep-alive timeout)."""

    head_timeout_seconds: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        if self._head_deadline is None and self.conn.their_state is h11.IDLE:
            self._arm_head_deadline()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._head_deadline = self.loop.call_later(self.head_timeout_seconds, self._head_timed_out)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.warning("request head not received in time; closing the connection")
            self.transport.close()


def protocol(head_timeout_seconds: float) -> type[H11Protocol]:
    """The protocol class uvicorn instantiates per connection, with the deadline set."""
    return type(
        "HeadTimeoutH11Protocol",
        (HeadTimeoutH11Protocol,),
        {"head_timeout_seconds": head_timeout_seconds},
    )


# glibc's mallopt parameter; fixing it also turns off glibc's dynamic threshold.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20


def return_large_blocks_to_the_system() -> bool:
    """Serve every allocation of 1 MiB or more (Argon2's 19 MiB per hash) from its own mapping,
    unmapped when freed. By default glibc raises its threshold after the first such free, and
    from then on each hashing thread's heap keeps the blocks: a login storm grows the worker by
    tens of MiB that never come back. False (nothing changed) where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter is linked with
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
