"""The HTTP surface: problem details, security headers, body limits, hosts, CORS, docs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from .conftest import PASSWORD, Harness, ServiceLog

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


async def test_security_headers_on_every_response(harness: Harness) -> None:
    for response in (
        await harness.client.get("/health/live"),
        await harness.client.get("/api/v1/users/me"),
        await harness.client.get("/nowhere"),
    ):
        headers = response.headers
        assert headers["content-security-policy"] == API_CSP
        assert headers["strict-transport-security"].startswith("max-age=")
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert "camera=()" in headers["permissions-policy"]
        assert headers["cache-control"] == "no-store"
        assert "server" not in headers


async def test_errors_are_problem_details_without_internals(harness: Harness) -> None:
    response = await harness.client.get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 404 and body["code"] == "not_found" and body["title"] == "Not Found"
    wrong_method = await harness.client.delete("/health/live")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "method_not_allowed"


async def test_unexpected_errors_are_500_problems_with_headers_and_request_id(
    harness: Harness, service_log: ServiceLog
) -> None:
    async def explode() -> None:
        raise RuntimeError("secret internal detail")

    harness.app.add_api_route("/explode", explode)
    # The app answers itself: nothing reaches the transport to be re-raised.
    response = await harness.client.get("/explode", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "internal_error"
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["x-request-id"] == "boom-1"
    assert response.headers["content-security-policy"] == API_CSP
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    lines = service_log()
    error = next(line for line in lines if line["event"] == "unhandled_error")
    assert error["request_id"] == "boom-1"
    assert "RuntimeError" in error["exception"]
    access = next(line for line in lines if line["event"] == "request")
    assert (access["status"], access["request_id"]) == (500, "boom-1")


async def test_malformed_json_is_400(harness: Harness) -> None:
    response = await harness.client.post(
        "/api/v1/auth/login", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"


async def test_validation_errors_never_echo_input(harness: Harness) -> None:
    secret = "password"  # refused as too common
    response = await harness.client.post(
        "/api/v1/auth/register", json={"email": "x@example.com", "password": secret * 20}
    )
    assert response.status_code == 422
    assert secret * 20 not in response.text
    assert all("input" not in error for error in response.json()["errors"])


async def test_password_policy(harness: Harness) -> None:
    cases = {
        "short1!": 422,  # too short
        "password123": 422,  # common
        "aaaaaaaaaaaa": 422,  # repetitive
        "x" * 129: 422,  # too long: refused, never truncated
    }
    for password, status in cases.items():
        response = await harness.client.post(
            "/api/v1/auth/register", json={"email": "p@example.com", "password": password}
        )
        assert response.status_code == status, password
    long_password = "Lg!" + "ab1" * 41 + "Z"  # 127 characters
    user = await harness.register(password=long_password)
    await user.login()
    truncated = await harness.client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": long_password[:72]}
    )
    assert truncated.status_code == 401


async def test_oversized_body_is_413_by_content_length(
    start_app: Callable[..., Any], make_settings: Callable[..., Any]
) -> None:
    async with start_app(make_settings(max_request_body_bytes=2048)) as harness:
        body = {"email": "big@example.com", "password": "x" * 4000}
        response = await harness.client.post("/api/v1/auth/register", json=body)
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"


async def test_oversized_chunked_body_is_cut_off_while_streaming(
    start_app: Callable[..., Any], make_settings: Callable[..., Any]
) -> None:
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            sent.append(1)
            yield b" " * 1024

    async with start_app(make_settings(max_request_body_bytes=4096)) as harness:
        response = await harness.client.post(
            "/api/v1/auth/login", content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert len(sent) < 64  # the server stopped reading long before the end


async def test_untrusted_host_is_refused_but_probes_still_answer(
    start_app: Callable[..., Any], make_settings: Callable[..., Any]
) -> None:
    async with start_app(make_settings(trusted_hosts=["api.example.com", "*.example.org"])) as h:
        evil = await h.client.get("/api/v1/users/me", headers={"host": "evil.test"})
        assert evil.status_code == 400
        assert evil.json()["code"] == "invalid_host"
        good = await h.client.get("/api/v1/users/me", headers={"host": "api.example.com"})
        assert good.status_code == 401
        wildcard = await h.client.get("/api/v1/users/me", headers={"host": "a.example.org:443"})
        assert wildcard.status_code == 401
        probe = await h.client.get("/health/live", headers={"host": "10.0.0.7:8000"})
        assert probe.status_code == 200


async def test_cors_allows_only_configured_origins(
    start_app: Callable[..., Any], make_settings: Callable[..., Any]
) -> None:
    async with start_app(make_settings(cors_origins="https://app.example.com")) as harness:
        preflight = {"access-control-request-method": "POST"}
        allowed = await harness.client.options(
            "/api/v1/auth/login", headers={"origin": "https://app.example.com", **preflight}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        denied = await harness.client.options(
            "/api/v1/auth/login", headers={"origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in denied.headers


async def test_request_id_is_echoed_or_made(harness: Harness) -> None:
    echoed = await harness.client.get("/health/live", headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    made = await harness.client.get("/health/live")
    assert len(made.headers["x-request-id"]) == 32
    hostile = await harness.client.get("/health/live", headers={"x-request-id": "a\tb<script>"})
    assert hostile.headers["x-request-id"] != "a\tb<script>"


async def test_large_responses_are_compressed(harness: Harness) -> None:
    response = await harness.client.get("/openapi.json", headers={"accept-encoding": "gzip"})
    assert response.headers.get("content-encoding") == "gzip"
    small = await harness.client.get("/health/live", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in small.headers
    plain = await harness.client.get("/openapi.json", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.json() == response.json()


async def test_docs_work_offline_under_their_own_csp(harness: Harness) -> None:
    page = await harness.client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "http" not in csp
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "init.js"):
        response = await harness.client.get(f"/docs/assets/{asset}")
        assert response.status_code == 200, asset
    assert (await harness.client.get("/docs/assets/..%2Fsecrets")).status_code == 404
    spec = (await harness.client.get("/openapi.json")).json()
    # The bundled UI must understand the OpenAPI version the app emits (e.g. 3.1).
    major_minor = spec["openapi"].rsplit(".", 1)[0]
    bundle = await harness.client.get("/docs/assets/swagger-ui-bundle.js")
    assert f"openapi+json;version={major_minor}" in bundle.text


async def test_docs_are_off_in_production_unless_enabled(
    start_app: Callable[..., Any], make_settings: Callable[..., Any]
) -> None:
    production = {
        "environment": "production",
        "secret_key": "k" * 16 + "Q7!vz" * 8,
        "trusted_hosts": ["localhost"],
    }
    async with start_app(make_settings(**production)) as harness:
        assert (await harness.client.get("/docs")).status_code == 404
        assert (await harness.client.get("/openapi.json")).status_code == 404
    async with start_app(make_settings(**production, docs_enabled=True)) as harness:
        assert (await harness.client.get("/docs")).status_code == 200


async def test_forwarded_for_is_ignored_from_untrusted_peers(harness: Harness) -> None:
    await harness.client.post(
        "/api/v1/auth/login",
        json={"email": "ghost@example.com", "password": PASSWORD},
        headers={"x-forwarded-for": "203.0.113.9"},
    )
    admin = await harness.user("admin")
    events = (await admin.get("/api/v1/audit-events", params={"action": "auth.login"})).json()
    failure = next(item for item in events["items"] if item["outcome"] == "failure")
    assert failure["client_ip"] == "127.0.0.1"


async def test_forwarded_for_is_used_behind_a_trusted_proxy(
    start_app: Callable[..., Any], make_settings: Callable[..., Any]
) -> None:
    async with start_app(make_settings(trusted_proxies=["127.0.0.0/8"])) as harness:
        await harness.client.post(
            "/api/v1/auth/login",
            json={"email": "ghost@example.com", "password": PASSWORD},
            # the client forged the first hop; the proxy appended the real one
            headers={"x-forwarded-for": "198.51.100.1, 203.0.113.9"},
        )
        admin = await harness.user("admin")
        events = (await admin.get("/api/v1/audit-events", params={"action": "auth.login"})).json()
        failure = next(item for item in events["items"] if item["outcome"] == "failure")
        assert failure["client_ip"] == "203.0.113.9"
