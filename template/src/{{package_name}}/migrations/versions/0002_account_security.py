"""Account security: the client's request id beside the server's in the audit log, refresh
token lineage for the concurrent-refresh grace window, and emails in their NFKC case-folded form.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("audit_events", sa.Column("client_request_id", sa.String(length=128)))
    op.add_column("refresh_tokens", sa.Column("parent_id", sa.Uuid()))
    op.create_index(op.f("ix_refresh_tokens_parent_id"), "refresh_tokens", ["parent_id"])
    _normalise_emails()


def _normalise_emails() -> None:
    """Accounts made before emails were NFKC case-folded: bring them to that form, unless the
    result is taken (a spoof of another account, left as it is for an admin to resolve)."""
    users = sa.table("users", sa.column("id", sa.Uuid()), sa.column("email", sa.String(254)))
    bind = op.get_bind()
    rows = bind.execute(sa.select(users.c.id, users.c.email)).all()
    taken = {email for _, email in rows}
    for user_id, email in rows:
        normalised = unicodedata.normalize("NFKC", email.strip()).casefold()
        if normalised != email and normalised not in taken:
            bind.execute(users.update().where(users.c.id == user_id).values(email=normalised))
            taken.discard(email)
            taken.add(normalised)


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_index(op.f("ix_refresh_tokens_parent_id"))
        batch.drop_column("parent_id")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("client_request_id")
