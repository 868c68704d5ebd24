"""The principal cache: who a session's bearer is, kept in memory so that an authenticated
request needs no database round trip, and dropped the moment anything it holds changes.

Correctness rests on four rules (docs/security.md, "The principal cache"):

1. Every committed change to a user, a session, a role or a permission invalidates the
   affected entries before the request that made it returns (`auth/principal_changes.py`
   notices the changes; the invalidation channel carries them to the other instances).
2. A lookup that raced an invalidation never fills the cache: an entry is stored only if no
   invalidation happened between the start of its database read and its end (`generation`).
3. While the channel that carries other instances' invalidations is down or late, the cache is
   bypassed: every request checks the database, as if there were no cache.
4. Entries expire after `PRINCIPAL_CACHE_TTL_SECONDS` whatever happens: the second line of
   defence against a change made outside the service (SQL by hand, another tool).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from prometheus_client import Counter, Gauge

from ..metrics import Metrics


@dataclass(frozen=True, slots=True)
class PrincipalUser:
    """What a request may know about its caller without asking the database: a read-only
    snapshot. Code that changes the account loads the row (`auth.dependencies.load_user`)."""

    id: uuid.UUID
    email: str
    full_name: str
    is_active: bool
    email_verified_at: datetime | None
    created_at: datetime
    roles: tuple[str, ...]  # sorted


@dataclass(frozen=True, slots=True)
class PrincipalRecord:
    """The database's answer for one live session: the user, the session's MFA state and
    every permission the user's roles grant."""

    user: PrincipalUser
    mfa_verified: bool
    permissions: frozenset[str]


@dataclass(frozen=True, slots=True)
class Invalidation:
    """Entries to drop: those of `users`, or every entry."""

    users: frozenset[uuid.UUID] = frozenset()
    everything: bool = False

    def __bool__(self) -> bool:
        return self.everything or bool(self.users)

    def __or__(self, other: Invalidation) -> Invalidation:
        if self.everything or other.everything:
            return EVERYTHING
        return Invalidation(users=self.users | other.users)


EVERYTHING = Invalidation(everything=True)

# A shared database read's outcome: whether it completed, and its answer.
Loaded = tuple[bool, "PrincipalRecord | None"]
Loader = Callable[[], Awaitable["PrincipalRecord | None"]]


class InvalidationChannel(Protocol):
    """Carries invalidations between the instances of the service (`principal_channel.py`)."""

    @property
    def healthy(self) -> bool:
        """Whether every invalidation published anywhere reaches this instance in time."""
        ...

    async def publish(self, invalidation: Invalidation) -> None: ...


class PrincipalCache:
    def __init__(self, ttl_seconds: float, max_entries: int, metrics: Metrics) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.channel: InvalidationChannel | None = None
        self.clock = time.monotonic
        # Bumped by every invalidation: a fill that started before one is refused (rule 2).
        self.generation = 0
        self._entries: dict[uuid.UUID, tuple[float, PrincipalRecord]] = {}
        # Database reads in progress, by session: concurrent misses share one (see load_once).
        self._loading: dict[uuid.UUID, tuple[int, asyncio.Future[Loaded]]] = {}
        lookups = Counter(
            "principal_cache_lookups_total",
            "Principal lookups by result: hit, miss, or bypass (cache off or channel unhealthy).",
            ["result"],
            registry=metrics.registry,
        )
        # Bound once: the hot path counts without a label lookup.
        self._hits, self._misses, self._bypasses = (
            lookups.labels(result) for result in ("hit", "miss", "bypass")
        )
        self._invalidations = Counter(
            "principal_cache_invalidations_total",
            "Invalidations applied, by origin: this instance or another one.",
            ["origin"],
            registry=metrics.registry,
        )
        Gauge(
            "principal_cache_entries", "Principals cached.", registry=metrics.registry
        ).set_function(lambda: len(self._entries))

    @property
    def usable(self) -> bool:
        return self.ttl > 0 and (self.channel is None or self.channel.healthy)

    def get(self, session_id: uuid.UUID, user_id: uuid.UUID) -> PrincipalRecord | None:
        if not self.usable:
            self._bypasses.inc()
            return None
        found = self._entries.get(session_id)
        if found is not None:
            expires, record = found
            if expires > self.clock() and record.user.id == user_id:
                self._hits.inc()
                return record
            del self._entries[session_id]
        self._misses.inc()
        return None

    async def load_once(
        self, session_id: uuid.UUID, user_id: uuid.UUID, load: Loader
    ) -> PrincipalRecord | None:
        """`load()` the session's principal from the database and cache it, once for every
        request of that session that missed meanwhile: when an entry expires under load, one
        read refills it instead of one per request. A request takes the shared answer only if
        no invalidation happened since that read began; otherwise it reads for itself."""
        pending = self._loading.get(session_id)
        if pending is not None:
            generation, shared = pending
            done, record = await asyncio.shield(shared)
            if done and generation == self.generation:
                return record if record is None or record.user.id == user_id else None
        generation = self.generation
        shared = asyncio.get_running_loop().create_future()
        self._loading[session_id] = (generation, shared)
        try:
            record = await load()
        except BaseException:
            shared.set_result((False, None))  # the others read for themselves
            raise
        finally:
            if self._loading.get(session_id, (None, None))[1] is shared:
                del self._loading[session_id]
        shared.set_result((True, record))
        if record is not None:
            self.put(session_id, record, generation)
        return record

    def put(self, session_id: uuid.UUID, record: PrincipalRecord, generation: int) -> None:
        """Store what the database answered, unless an invalidation happened since
        `generation` was read (before the database was asked) or the cache is unusable."""
        if generation != self.generation or not self.usable:
            return
        if len(self._entries) >= self.max_entries:
            # The oldest entry goes: dicts keep insertion order.
            self._entries.pop(next(iter(self._entries)))
        self._entries[session_id] = (self.clock() + self.ttl, record)

    def apply(self, invalidation: Invalidation, *, origin: str = "local") -> None:
        if not invalidation:
            return
        self.generation += 1
        self._invalidations.labels(origin).inc()
        if invalidation.everything:
            self._entries.clear()
            return
        stale = [
            session_id
            for session_id, (_, record) in self._entries.items()
            if record.user.id in invalidation.users
        ]
        for session_id in stale:
            del self._entries[session_id]

    def clear(self) -> None:
        """Forget everything: the channel may have lost invalidations (rule 3)."""
        self.apply(EVERYTHING, origin="channel")

    async def publish(self, invalidation: Invalidation) -> None:
        if invalidation and self.channel is not None:
            await self.channel.publish(invalidation)


def affected_users(ids: Iterable[uuid.UUID]) -> Invalidation:
    return Invalidation(users=frozenset(ids))
