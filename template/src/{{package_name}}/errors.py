"""RFC 9457 problem details: the one error shape every response of the service uses."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.routing import Match

from .paths import iter_routes

PROBLEM_MEDIA_TYPE = "application/problem+json"

logger = structlog.get_logger(__name__)


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem(
    status: int,
    code: str,
    detail: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": f"urn:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    if extra:
        body.update(extra)
    return ProblemResponse(body, status_code=status, headers=dict(headers or {}))


class ProblemError(Exception):
    """Raised anywhere in the service; rendered as a problem response with a stable `code`."""

    status = 400
    code = "bad_request"
    detail = "The request could not be processed."
    # Set on refusals of security actions: the handler writes them to the audit log.
    audit_action: str | None = None

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        audit_details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.detail)
        self.detail = detail or self.detail
        self.headers = dict(headers or {})
        self.audit_details = dict(audit_details or {})


class Unauthorized(ProblemError):
    status = 401
    code = "not_authenticated"
    detail = "Valid credentials are required."

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ProblemError):
    status = 403
    code = "forbidden"
    detail = "You do not have permission to perform this action."


class NotFound(ProblemError):
    status = 404
    code = "not_found"
    detail = "The resource does not exist."


class Conflict(ProblemError):
    status = 409
    code = "conflict"
    detail = "The request conflicts with the current state of the resource."


class TooManyRequests(ProblemError):
    status = 429
    code = "rate_limited"
    detail = "Too many requests; retry later."

    def __init__(
        self,
        retry_after: int,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        merged = {k: v for k, v in (headers or {}).items() if k.lower() != "retry-after"}
        merged["Retry-After"] = str(max(retry_after, 1))
        super().__init__(detail, headers=merged)


class ServiceUnavailable(ProblemError):
    status = 503
    code = "service_unavailable"
    detail = "A dependency of the service is unavailable; retry later."

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": "5"})


_STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _problem_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, ProblemError)
    if exc.status == 401:
        request.app.state.metrics.auth_failures.labels(exc.code).inc()
    if exc.audit_action is not None:
        from .audit.refusals import audit_refusal

        await audit_refusal(request, exc.audit_action, exc.code, exc.audit_details)
    return problem(exc.status, exc.code, exc.detail, headers=exc.headers)


async def _http_exception(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    return problem(exc.status_code, code, detail, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of this path answers. Starlette names only the first route's,
    and FastAPI makes one route per method."""
    methods: set[str] = set()
    for route in iter_routes(request.app.routes):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _validation_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return problem(400, "malformed_json", "The request body is not valid JSON.")
    # Never echo `input`: it may hold the password that failed validation.
    safe = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in errors
    ]
    return problem(422, "validation_failed", "The request is not valid.", extra={"errors": safe})


async def _integrity_error(request: Request, exc: Exception) -> ProblemResponse:
    logger.info("integrity_conflict", error=type(exc).__name__)
    return problem(409, "conflict", "The resource already exists or is still referenced.")


async def _database_unavailable(request: Request, exc: Exception) -> ProblemResponse:
    logger.warning("database_unavailable", error=type(exc).__name__)
    return problem(
        503,
        "database_unavailable",
        "The database is unavailable; retry later.",
        headers={"Retry-After": "5"},
    )


# SQLSTATE classes of an unreachable or refusing server: connection exceptions, insufficient
# resources (too many connections), operator intervention (shutting down, starting up).
_OUTAGE_SQLSTATES = ("08", "53", "57P")


def is_database_outage(exc: DBAPIError) -> bool:
    """Whether a driver error means "the database is not there" rather than "this is a bug"."""
    if exc.connection_invalidated:
        return True
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return isinstance(code, str) and code.startswith(_OUTAGE_SQLSTATES)


async def _driver_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, DBAPIError)
    if is_database_outage(exc):
        return await _database_unavailable(request, exc)
    return await _unhandled(request, exc)


async def _unhandled(request: Request, exc: Exception) -> ProblemResponse:
    from .error_reporting import report  # it imports observability, which imports this

    logger.exception("unhandled_error")
    report(exc)
    return problem(500, "internal_error", "An unexpected error occurred.")


def install_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    # Lost connections, refused connections and an exhausted pool are outages, not bugs.
    outages = (OperationalError, InterfaceError, PoolTimeoutError, ConnectionError, TimeoutError)
    for outage in outages:
        app.add_exception_handler(outage, _database_unavailable)
    # Other driver errors: a server shutting down or starting up is an outage too.
    app.add_exception_handler(DBAPIError, _driver_error)
    app.add_exception_handler(Exception, _unhandled)
