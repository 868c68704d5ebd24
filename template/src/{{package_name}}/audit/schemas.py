"""Response bodies of the audit endpoint."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from ..schemas import OutputModel


class AuditEventOut(OutputModel):
    id: uuid.UUID
    created_at: datetime
    action: str
    outcome: str
    actor_id: uuid.UUID | None
    subject: str | None
    client_ip: str | None
    request_id: str | None
    client_request_id: str | None
    details: dict[str, Any]
