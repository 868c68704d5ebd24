"""The permissions of AI chat; the `ai_chat_0001` migration seeds exactly these."""

from __future__ import annotations

from enum import StrEnum


class AIPerm(StrEnum):
    CHAT = "ai:chat"
    USAGE_READ = "ai_usage:read"
    ANALYTICS_READ = "ai_analytics:read"
    QUOTAS_WRITE = "ai_quotas:write"
