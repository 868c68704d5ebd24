"""AI chat: conversations, an OpenAI-compatible provider, quotas and a usage ledger."""
