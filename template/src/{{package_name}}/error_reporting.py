"""Unhandled errors reported to Sentry, only when SENTRY_DSN is set, scrubbed before they leave.

`sentry_sdk` is imported by `ErrorReporting.start` (in the lifespan), never at import time. The
client is used directly, without `sentry_sdk.init` and its default integrations: nothing is
patched, no request, header, cookie, body, local variable or user is attached, and every string
of an event is scrubbed of emails and bearer tokens and every field named like a secret is
redacted. An event carries the request id and trace id as tags, and the package version as its
release.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import structlog

from . import tracing
from ._project import PROJECT_SLUG
from .observability import REDACTED, SENSITIVE_KEYS

if TYPE_CHECKING:
    from sentry_sdk import Client

    from .config import Settings

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")  # not `name@1.2.0`
BEARER = re.compile(r"(?i)\bbearer\s+\S+")
JWT = re.compile(r"\beyJ[\w-]*\.[\w-]+\.[\w-]*")
# What an event may carry about the request: the rest (url, headers, cookies, body) is dropped.
_DROPPED_FIELDS = ("request", "user", "breadcrumbs")

# The client of the running service, None while error reporting is off.
_client: Client | None = None


def _scrub(value: Any, key: str = "") -> Any:
    if any(marker in key.lower() for marker in SENSITIVE_KEYS):
        return REDACTED
    if isinstance(value, str):
        return EMAIL.sub("[email]", JWT.sub(REDACTED, BEARER.sub("Bearer " + REDACTED, value)))
    if isinstance(value, dict):
        return {name: _scrub(item, str(name)) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


def scrub_event(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """`before_send`: the event as it may leave the process."""
    for field in _DROPPED_FIELDS:
        event.pop(field, None)
    scrubbed: dict[str, Any] = _scrub(event)
    return scrubbed


class ErrorReporting:
    """The Sentry client of one application: started and closed (which flushes) by the
    lifespan."""

    def __init__(self, settings: Settings) -> None:
        assert settings.sentry_dsn is not None
        self._dsn = settings.sentry_dsn.get_secret_value()
        self._environment = settings.sentry_environment or settings.environment.value

    def start(self) -> None:
        global _client
        import sentry_sdk

        _client = sentry_sdk.Client(
            dsn=self._dsn,
            release=f"{PROJECT_SLUG}@{tracing.package_version()}",
            environment=self._environment,
            # No personal data is sent by default (`send_default_pii`, now `data_collection`,
            # stays at its default); the scrubbing below is for what the code itself puts in.
            include_local_variables=False,
            max_request_body_size="never",
            default_integrations=False,
            auto_enabling_integrations=False,
            before_send=scrub_event,  # type: ignore[arg-type]
            before_breadcrumb=lambda crumb, hint: None,
        )

    def flush(self) -> None:
        if _client is not None:
            _client.flush(timeout=5)

    def close(self) -> None:
        global _client
        client, _client = _client, None
        if client is not None:
            client.close(timeout=5)


def report(error: BaseException) -> None:
    """Send an unhandled error, with the request id and trace id of the current request."""
    if _client is None:
        return
    import sentry_sdk

    context = structlog.contextvars.get_contextvars()
    ids = tracing.current_ids()
    trace_id = ids[0] if ids else context.get("trace_id")
    with sentry_sdk.new_scope() as scope:  # this request's, on this service's client
        scope.set_client(_client)
        for name, value in (("request_id", context.get("request_id")), ("trace_id", trace_id)):
            if value:
                scope.set_tag(name, value)
        scope.capture_exception(error)
