"""The OpenAPI document tells the truth: every error an operation really sends is declared, as
the problem+json body it is, a 405 names every allowed method, and a NUL character anywhere in
the input is a declared 422, never a driver error, on the variant's real database."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx

from .conftest import PASSWORD, Harness, User

NUL = "\x00"
PROBLEM = "application/problem+json"


def _document(harness: Harness) -> dict[str, Any]:
    document: dict[str, Any] = harness.app.openapi()
    return document


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    operations = [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]
    # Ending every session of the caller goes last, so the other calls keep their token.
    return sorted(operations, key=lambda entry: entry[1].endswith("/logout-all"))


def _concrete(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, path)


def _assert_declared(operation: dict[str, Any], response: httpx.Response, what: str) -> None:
    declared = operation["responses"]
    status = str(response.status_code)
    assert status in declared, f"{what}: {status} not in {sorted(declared)}: {response.text}"
    if response.status_code >= 400 and response.headers.get("content-type") == PROBLEM:
        content = declared[status].get("content", {})
        assert PROBLEM in content, f"{what}: {status} declared as {sorted(content)}"
        body = response.json()
        required = {"type", "title", "status", "code"}
        assert required <= body.keys(), f"{what}: {body}"
        assert body["status"] == response.status_code


def test_errors_are_declared_as_problem_details(harness: Harness) -> None:
    document = _document(harness)
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert {"Problem", "ValidationProblem"} <= schemas.keys()
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400 or path == "/health/ready":
                continue
            (media_type,) = response["content"]
            assert media_type == PROBLEM, f"{method} {path} {status}"
            expected = "ValidationProblem" if status == "422" else "Problem"
            assert response["content"][PROBLEM]["schema"]["$ref"].endswith(expected)
        responses = operation["responses"]
        if path.startswith("/api/v1/"):
            assert {"429", "503"} <= responses.keys(), f"{method} {path}"
            assert responses["429"]["headers"]["Retry-After"]["required"] is True
        if operation.get("x-permissions"):
            assert {"401", "403"} <= responses.keys(), f"{method} {path}"
        if "requestBody" in operation:
            assert {"413", "422"} <= responses.keys(), f"{method} {path}"
        if "{" in path:
            assert "404" in responses, f"{method} {path}"


async def test_every_operation_answers_only_what_it_declares(
    harness: Harness,
) -> None:
    """Each operation, called anonymously and as an admin, with no body, an empty object,
    malformed JSON, unknown or NUL path values: every answer is declared."""
    admin = await harness.user("admin")
    document = _document(harness)
    bodies: list[dict[str, Any]] = [
        {},
        {"json": {}},
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
    ]
    for method, path, operation in _operations(document):
        for value in (str(uuid.uuid4()), "no-such-role", "%00"):
            url = _concrete(path, value)
            for caller in (None, admin):
                for body in bodies:
                    what = f"{method} {url!r} as {'admin' if caller else 'anonymous'} {body}"
                    kwargs = {**body, "headers": {**body.get("headers", {})}}
                    if caller is not None:
                        kwargs["headers"].update(caller.headers)
                    response = await harness.client.request(method, url, **kwargs)
                    _assert_declared(operation, response, what)
            if "{" not in path:
                break


async def test_method_not_allowed_lists_every_method_of_the_path(harness: Harness) -> None:
    document = _document(harness)
    for path, item in document["paths"].items():
        allowed = sorted(method.upper() for method in item)
        unsupported = next(m for m in ("PUT", "PATCH", "DELETE", "POST") if m not in allowed)
        response = await harness.client.request(unsupported, _concrete(path, "admin"))
        assert response.status_code == 405, path
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["allow"] == ", ".join(allowed), path


async def test_nul_is_a_declared_422_in_every_text_input(harness: Harness) -> None:
    admin = await harness.user("admin")
    user = await harness.user()
    client = harness.client
    text_inputs: list[tuple[str, str, dict[str, Any], User | None]] = [
        (
            "POST",
            "/api/v1/auth/register",
            {"json": {"email": "n@example.com", "password": PASSWORD, "full_name": NUL}},
            None,
        ),
        (
            "POST",
            "/api/v1/auth/register",
            {"json": {"email": "n@example.com", "password": PASSWORD + NUL}},
            None,
        ),
        (
            "POST",
            "/api/v1/auth/login",
            {"json": {"email": f"a{NUL}@example.com", "password": "x"}},
            None,
        ),
        (
            "POST",
            "/api/v1/auth/token",
            {"data": {"username": user.email, "password": PASSWORD, "client_id": NUL}},
            None,
        ),
        ("POST", "/api/v1/auth/password/forgot", {"json": {"email": f"{NUL}@example.com"}}, None),
        ("PATCH", "/api/v1/users/me", {"json": {"full_name": f"Ann{NUL}"}}, user),
        ("PATCH", f"/api/v1/users/{user.id}", {"json": {"full_name": NUL}}, admin),
        ("POST", "/api/v1/roles", {"json": {"name": "auditor", "description": NUL}}, admin),
        ("PATCH", "/api/v1/roles/user", {"json": {"description": f"x{NUL}y"}}, admin),
        ("GET", "/api/v1/users?email=%00", {}, admin),
        ("GET", "/api/v1/users?email=a%00b%40example.com", {}, admin),
        ("GET", "/api/v1/audit-events?action=login%00", {}, admin),
        ("GET", "/api/v1/roles/%00", {}, admin),
        ("PUT", f"/api/v1/users/{user.id}/roles/%00", {}, admin),
        ("DELETE", f"/api/v1/users/{user.id}/roles/a%00", {}, admin),
    ]
    document = _document(harness)

    async def attempt(method: str, url: str, kwargs: dict[str, Any], caller: User | None) -> None:
        headers = caller.headers if caller else {}
        response = await client.request(method, url, headers=headers, **kwargs)
        assert response.status_code == 422, f"{method} {url}: {response.text}"
        body = response.json()
        assert body["code"] == "validation_failed"
        assert any(
            error["type"] == "string_contains_nul" or "email" in error["msg"]
            for error in body["errors"]
        ), body
        template = re.sub(r"/[0-9a-f-]{36}", "/{user_id}", url.split("?")[0])
        template = re.sub(r"/roles/[^/]+$", "/roles/{role_name}", template)
        operation = document["paths"][template][method.lower()]
        _assert_declared(operation, response, f"{method} {url}")

    # All at once, as an attacker would send them: each is refused on its own.
    await asyncio.gather(*(attempt(*entry) for entry in text_inputs * 2))
    listed = await admin.get("/api/v1/users", params={"limit": 100})
    assert all(NUL not in item["full_name"] for item in listed.json()["items"])
    assert "auditor" not in {role["name"] for role in (await admin.get("/api/v1/roles")).json()}
