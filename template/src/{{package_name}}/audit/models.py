"""The append-only audit event table."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ..database import Base, UTCDateTime, utcnow

SUBJECT_MAX_LENGTH = 255
REQUEST_ID_MAX_LENGTH = 128


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16), default="success")
    actor_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True, default=None
    )
    subject: Mapped[str | None] = mapped_column(String(SUBJECT_MAX_LENGTH), default=None)
    client_ip: Mapped[str | None] = mapped_column(String(45), default=None)
    # The server's id of the request; the id a client sent (validated) is kept beside it.
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_MAX_LENGTH), default=None)
    client_request_id: Mapped[str | None] = mapped_column(
        String(REQUEST_ID_MAX_LENGTH), default=None
    )
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
