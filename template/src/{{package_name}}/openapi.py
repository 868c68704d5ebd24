"""The OpenAPI document as the service really answers: every error an operation can send, as
the `application/problem+json` body it really is, and the NUL constraint on free text.

Most errors follow from a route's shape: a permission guard can answer 401 and 403, a request
body 400 (malformed JSON), 413 and 422, a path parameter 404, and everything under the API
prefix 429 (rate limits) and 503 (database or rate-limit storage down). `SERVICE_ERRORS` lists
what only the service behind a route knows (a taken email, a built-in role); a route added
later that raises such an error adds its line there, or declares it with `responses=` on its
route (what an optional feature's router does).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.utils import get_flat_params
from fastapi.params import Form
from fastapi.routing import APIRoute

from .errors import PROBLEM_MEDIA_TYPE
from .paths import API_PREFIX, iter_routes
from .rbac.routing import required_permissions
from .text import NO_NUL_PATTERN

A = API_PREFIX
# (method, path) -> {status: what it means}, for errors a route's shape does not reveal.
SERVICE_ERRORS: dict[tuple[str, str], dict[int, str]] = {
    ("POST", f"{A}/auth/register"): {
        403: "Registration is closed (`forbidden`).",
        409: "The email is already registered (`email_taken`).",
    },
    ("POST", f"{A}/auth/login"): {
        401: "Wrong email or password (`invalid_credentials`).",
        403: "The email is not verified yet (`email_unverified`, UNVERIFIED_ACCOUNT_ACCESS).",
    },
    ("POST", f"{A}/auth/token"): {
        401: "Wrong email or password (`invalid_credentials`).",
        403: "The email is not verified yet (`email_unverified`, UNVERIFIED_ACCOUNT_ACCESS).",
    },
    ("POST", f"{A}/auth/email/verify"): {
        401: "The token is unknown, used or expired (`invalid_verification_token`)."
    },
    ("POST", f"{A}/auth/refresh"): {
        401: "The refresh token is unknown, expired or reused (`invalid_refresh_token`).",
        409: "The token was rotated a moment ago by a concurrent call "
        "(`refresh_token_superseded`).",
    },
    ("POST", f"{A}/auth/mfa/totp"): {409: "TOTP is already enabled (`mfa_already_enabled`)."},
    ("POST", f"{A}/auth/mfa/totp/confirm"): {
        401: "The code is wrong or used (`invalid_mfa_code`).",
        409: "No enrolment started, or TOTP already on (`mfa_not_enrolled`, "
        "`mfa_already_enabled`).",
    },
    ("DELETE", f"{A}/auth/mfa/totp"): {
        401: "Wrong password or code (`invalid_credentials`, `invalid_mfa_code`).",
        409: "TOTP is off, or a role requires it (`mfa_not_enrolled`, `mfa_required_by_role`).",
    },
    ("POST", f"{A}/auth/mfa/verify"): {
        401: "The MFA step expired, or the code is wrong or used (`invalid_mfa_token`, "
        "`invalid_mfa_code`)."
    },
    ("POST", f"{A}/auth/password/reset"): {
        401: "The reset token is unknown, used or expired (`invalid_reset_token`)."
    },
    ("DELETE", f"{A}/users/me"): {409: "The last active admin cannot leave (`last_admin`)."},
    ("PATCH", f"{A}/users/{{user_id}}"): {409: "You cannot disable your own account."},
    ("DELETE", f"{A}/users/{{user_id}}/roles/{{role_name}}"): {
        409: "The last active admin keeps the role (`last_admin`)."
    },
    ("POST", f"{A}/roles"): {409: "A role with this name exists (`conflict`)."},
    ("PATCH", f"{A}/roles/{{role_name}}"): {409: "Built-in roles cannot change (`builtin_role`)."},
    ("DELETE", f"{A}/roles/{{role_name}}"): {409: "Built-in roles stay (`builtin_role`)."},
}

_STRING = {"type": "string"}
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `code` is stable, `detail` is for people.",
    "type": "object",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": _STRING,
        "title": _STRING,
        "status": {"type": "integer"},
        "code": _STRING,
        "detail": _STRING,
    },
}
VALIDATION_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "ValidationProblem",
    "description": "A problem whose `errors` say which inputs are wrong; inputs are never "
    "echoed back.",
    "type": "object",
    "required": ["type", "title", "status", "code"],
    "properties": {
        **PROBLEM_SCHEMA["properties"],
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [_STRING, {"type": "integer"}]}},
                    "msg": _STRING,
                    "type": _STRING,
                },
            },
        },
    },
}

_RETRY_AFTER = {"description": "Seconds to wait.", "schema": {"type": "integer"}}
_RATE_LIMIT_HEADERS = {
    name: {"description": f"The IETF `{name}` rate-limit header.", "schema": _STRING}
    for name in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy")
}
GENERIC_ERRORS = {
    400: "The body is not valid JSON (`malformed_json`).",
    401: "Missing, invalid or expired credentials (`not_authenticated`).",
    403: "The caller lacks a required permission (`forbidden`).",
    404: "The resource does not exist (`not_found`, `user_not_found`, `role_not_found`).",
    413: "The request body is over the size limit (`payload_too_large`).",
    422: "The request is not valid (`validation_failed`); `errors` lists each input.",
    429: "A rate limit is spent (`rate_limited`); retry after `Retry-After` seconds.",
    503: "The database or the rate-limit storage is unavailable; retry later.",
}


def _error_response(status: int, description: str) -> dict[str, Any]:
    schema = "ValidationProblem" if status == 422 else "Problem"
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": _STRING}}
    elif status == 429:
        response["headers"] = {"Retry-After": {**_RETRY_AFTER, "required": True}}
        response["headers"].update(_RATE_LIMIT_HEADERS)
    elif status == 503:
        response["headers"] = {"Retry-After": _RETRY_AFTER}
    return response


def route_errors(route: APIRoute, method: str) -> dict[int, str]:
    """Every error status `method` on `route` can answer, with what it means."""
    body = route.body_field
    statuses: dict[int, str] = {}
    if required_permissions(route.dependant):
        statuses |= {401: GENERIC_ERRORS[401], 403: GENERIC_ERRORS[403]}
    if body is not None:
        statuses[413] = GENERIC_ERRORS[413]
        if not isinstance(body.field_info, Form):
            statuses[400] = GENERIC_ERRORS[400]
    if body is not None or get_flat_params(route.dependant):
        statuses[422] = GENERIC_ERRORS[422]
    if route.param_convertors:
        statuses[404] = GENERIC_ERRORS[404]
    if route.path.startswith(API_PREFIX + "/"):
        statuses |= {429: GENERIC_ERRORS[429], 503: GENERIC_ERRORS[503]}
    declared = {
        int(status): str(response.get("description", ""))
        for status, response in route.responses.items()
        if int(status) >= 400
    }  # a router's own `responses=` (e.g. an optional feature's provider errors)
    for status, meaning in {**declared, **SERVICE_ERRORS.get((method, route.path), {})}.items():
        statuses[status] = f"{statuses[status]} Or: {meaning}" if status in statuses else meaning
    return dict(sorted(statuses.items()))


def _refuse_nul_in_text(schema: Any) -> None:
    """Add the NUL constraint to every free-text string (no format, no pattern of its own)."""
    if isinstance(schema, dict):
        if schema.get("type") == "string" and not {"format", "pattern", "enum", "const"} & set(
            schema
        ):
            schema["pattern"] = NO_NUL_PATTERN
        for value in schema.values():
            _refuse_nul_in_text(value)
    elif isinstance(schema, list):
        for item in schema:
            _refuse_nul_in_text(item)


def _referenced(schema: Any, components: dict[str, Any]) -> set[str]:
    """Names of the component schemas `schema` refers to, directly or through others."""
    found: set[str] = set()
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[1]
                if name not in found and name in components:
                    found.add(name)
                    pending.append(components[name])
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def describe_errors(document: dict[str, Any], routes: Iterable[Any]) -> dict[str, Any]:
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for default in ("HTTPValidationError", "ValidationError"):
        components.pop(default, None)
    for route in iter_routes(routes):
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in sorted(route.methods or ()):
            operation = document["paths"][route.path_format][method.lower()]
            responses = operation.setdefault("responses", {})
            for status, description in route_errors(route, method).items():
                responses[str(status)] = _error_response(status, description)
            for parameter in operation.get("parameters", []):
                _refuse_nul_in_text(parameter.get("schema"))
    # Request bodies and every model they reference: the inputs InputModel guards.
    bodies = [
        operation.get("requestBody")
        for path_item in document.get("paths", {}).values()
        for operation in path_item.values()
    ]
    for name in _referenced(bodies, components):
        _refuse_nul_in_text(components[name])
    _refuse_nul_in_text(bodies)
    components["Problem"] = PROBLEM_SCHEMA
    components["ValidationProblem"] = VALIDATION_PROBLEM_SCHEMA
    return document


def install_openapi(app: FastAPI) -> None:
    """Build the document once, on first request, with the errors described."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe_errors(build(), app.routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
