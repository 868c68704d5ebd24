"""The audit log: security-relevant events, readable by admins."""
