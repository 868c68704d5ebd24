"""Notices every committed change that can alter a principal and invalidates the cache for it.

The request's database session does the noticing, so no route and no service can forget it:

- objects changed through the ORM are seen at flush: a user or a session names its user, a
  role or a permission concerns everyone;
- a bulk statement (`update`, `delete`, `insert`) on one of the principal's tables concerns
  everyone, unless the code that runs it names the users it affects with `note_users` and
  marks the statement `NOTED` (the precise, cheaper form the services use);
- on commit of the outermost transaction (a savepoint's release is not yet a commit), the
  cache of this instance drops the entries at once and `AppSession.commit` publishes the
  invalidation to the other instances before it returns. A rollback keeps what was noticed:
  invalidating too much is harmless, and a commit whose outcome is unknown (the connection
  dropped during COMMIT) is treated as done.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session

from ..database import create_sessionmaker
from ..rbac.models import Permission, Role
from ..users.models import User
from .models import AuthSession
from .principal_cache import EVERYTHING, Invalidation, PrincipalCache, affected_users

logger = structlog.get_logger(__name__)

# The tables a principal is read from (auth.dependencies.load_principal).
PRINCIPAL_TABLES = frozenset(
    {"users", "auth_sessions", "user_roles", "roles", "permissions", "role_permissions"}
)
# Execution options of a bulk statement whose affected users were named with `note_users`.
NOTED = {"principals_noted": True}

_CACHE = "principal_cache"
_PENDING = "principal_changes.pending"
_UNPUBLISHED = "principal_changes.unpublished"


def note_users(session: AsyncSession | Session, user_ids: Iterable[uuid.UUID]) -> None:
    """Declare that this transaction changes the principals of `user_ids`."""
    _notice(_sync(session), affected_users(user_ids))


def _sync(session: AsyncSession | Session) -> Session:
    return session.sync_session if isinstance(session, AsyncSession) else session


def _notice(session: Session, invalidation: Invalidation) -> None:
    if invalidation and _CACHE in session.info:
        session.info[_PENDING] = session.info.get(_PENDING, Invalidation()) | invalidation


class TrackedSession(Session):
    """The synchronous session under every request's `AppSession`."""


@event.listens_for(TrackedSession, "before_flush")
def _changed_objects(session: Session, _flush_context: Any, _instances: Any) -> None:
    users: set[uuid.UUID] = set()
    everything = False
    for instance in (*session.dirty, *session.deleted):
        if isinstance(instance, User):
            users.add(instance.id)
        elif isinstance(instance, AuthSession):
            users.add(instance.user_id)
        elif isinstance(instance, Role | Permission):
            everything = True
    _notice(session, EVERYTHING if everything else affected_users(users))


@event.listens_for(TrackedSession, "do_orm_execute")
def _bulk_statement(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    table = getattr(getattr(state.statement, "table", None), "name", None)
    if table in PRINCIPAL_TABLES and not state.execution_options.get("principals_noted"):
        logger.debug("principal_cache_cleared_by_bulk_statement", table=table)
        _notice(state.session, EVERYTHING)


@event.listens_for(TrackedSession, "after_commit")
def _committed(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: the outer commit decides
        return
    invalidation: Invalidation | None = session.info.pop(_PENDING, None)
    if not invalidation:
        return
    cache: PrincipalCache = session.info[_CACHE]
    cache.apply(invalidation)  # this instance: at once, whatever path committed
    session.info[_UNPUBLISHED] = session.info.get(_UNPUBLISHED, Invalidation()) | invalidation


class AppSession(AsyncSession):
    """An `AsyncSession` whose commit returns only once the other instances were told."""

    async def commit(self) -> None:
        try:
            await super().commit()
        except BaseException:
            # It may have committed all the same: drop and announce what it would change.
            _committed(self.sync_session)
            await self._publish()
            raise
        await self._publish()

    async def close(self) -> None:
        await self._publish()  # a commit made some other way (`session.begin()`)
        await super().close()

    async def _publish(self) -> None:
        invalidation: Invalidation | None = self.sync_session.info.pop(_UNPUBLISHED, None)
        if invalidation:
            cache: PrincipalCache = self.sync_session.info[_CACHE]
            await cache.publish(invalidation)


def tracked_sessionmaker(
    engine: AsyncEngine, cache: PrincipalCache
) -> async_sessionmaker[AsyncSession]:
    """The sessions of the running service: every commit keeps `cache` true."""
    return create_sessionmaker(
        engine, class_=AppSession, sync_session_class=TrackedSession, info={_CACHE: cache}
    )
