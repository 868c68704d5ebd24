"""Slow tier: each variant of the booted covering set (conftest.BOOTED_VARIANTS) installs,
type-checks, migrates, passes its own suite, and serves a real HTTP flow in production mode until
SIGTERM ends it cleanly.

Servers bind 127.0.0.1 only. Each test gets fresh, uniquely named databases.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import (
    ProjectCache,
    assert_ok,
    describe,
    fresh_database,
    project_env,
    run,
    variant_answers,
)
from servers import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    PASSWORD,
    REDIS_URL,
    SHUTDOWN_TIMEOUT,
    SUITE_TIMEOUT,
    USER_EMAIL,
    Server,
    bearer,
    cli,
    problem,
    service_env,
    start_server,
    stop,
    token_pair,
    wait_until_ready,
)

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def installed(project_cache: ProjectCache, booted_variant: str) -> Path:
    return project_cache.installed(booted_variant)


@pytest.fixture(scope="module")
def answers(booted_variant: str) -> dict[str, Any]:
    return variant_answers(booted_variant)


@pytest.fixture
def migrated_database(installed: Path, answers: dict[str, Any], tmp_path: Path) -> Iterator[str]:
    """A fresh database of the variant's engine with every migration applied by the CLI."""
    with fresh_database(answers["database"], tmp_path / "db") as url:
        env = service_env(answers, url)
        assert_ok(run(cli(answers, "migrate"), cwd=installed, env=env))
        yield url


@pytest.fixture(scope="module")
def served(
    installed: Path, answers: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A production-mode server on a freshly migrated database that has one admin."""
    with fresh_database(answers["database"], tmp_path_factory.mktemp("served-db")) as url:
        env = service_env(answers, url)
        assert_ok(run(cli(answers, "migrate"), cwd=installed, env=env))
        created = run(
            cli(answers, "create-admin", "--email", ADMIN_EMAIL, "--password-stdin"),
            cwd=installed,
            env=env,
            input=ADMIN_PASSWORD + "\n",
        )
        assert_ok(created)
        server = start_server(installed, answers, env)
        try:
            wait_until_ready(server)
            yield server
        finally:
            stop(server)


# -------------------------------------------------------------------------------- tests
def test_mypy_is_clean(installed: Path) -> None:
    assert_ok(run(["uv", "run", "mypy"], cwd=installed, env=project_env(), timeout=600))


def test_migrate_is_idempotent(
    installed: Path, answers: dict[str, Any], migrated_database: str
) -> None:
    again = run(
        cli(answers, "migrate"),
        cwd=installed,
        env=service_env(answers, migrated_database),
    )
    assert_ok(again)


# What a developer's shell and `.env` may hold while they run the generated suite: settings
# that would break it if they reached the tests (production mode, a database that does not
# exist, throttles of one request an hour, docs off).
CALLER_EXPORTS = {
    "ENVIRONMENT": "production",
    "SECRET_KEY": "exported-secret-key-exported-secret-key-0123456789",
    "DATABASE_URL": "sqlite:////nonexistent/exported.db",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "CORS_ORIGINS": "*",
    "CORS_ALLOW_CREDENTIALS": "true",
    "RATE_LIMIT_AUTH": "1/hour",
}
CALLER_DOTENV = (
    "ENVIRONMENT=production\n"
    "SECRET_KEY=dotenv-secret-key-dotenv-secret-key-0123456789\n"
    "DATABASE_URL=sqlite:////nonexistent/dotenv.db\n"
    "DEBUG=true\n"
    "TRUSTED_HOSTS=elsewhere.example\n"
    "REGISTRATION_ENABLED=false\n"
    "RATE_LIMIT_DEFAULT=1/hour\n"
    "DOCS_ENABLED=false\n"
)


def test_generated_suite_passes_against_a_freshly_migrated_database(
    installed: Path, answers: dict[str, Any], migrated_database: str
) -> None:
    """...whatever the caller exported or wrote into `.env` (the suite is hermetic)."""
    env = project_env(TEST_DATABASE_URL=migrated_database, **CALLER_EXPORTS)
    if answers["rate_limit_backend"] == "redis":
        env["TEST_REDIS_URL"] = REDIS_URL
    dotenv = installed / ".env"
    assert not dotenv.exists(), "the shared install must not carry a .env"
    dotenv.write_text(CALLER_DOTENV, encoding="utf-8")
    try:
        result = run(
            ["uv", "run", "pytest", "--cov", "-q", "-x", "-p", "no:cacheprovider"],
            cwd=installed,
            env=env,
            timeout=SUITE_TIMEOUT,
        )
    finally:
        dotenv.unlink()  # the other tests of this install run the service with their own env
    assert result.returncode == 0, describe(result, tail=120)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    passed = re.search(r"\b(\d+) passed\b", summary)
    assert passed, f"no passed tests reported: {summary!r}\n{describe(result)}"
    assert int(passed.group(1)) > 0
    assert "no tests ran" not in result.stdout


def test_http_flow_in_production(served: Server) -> None:
    with httpx.Client(base_url=served.base_url, timeout=10) as client:
        # Health
        assert client.get("/health/live").status_code == 200
        ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        # An unreachable Qdrant server (see service_env) degrades readiness, never fails it.
        assert ready.json()["status"] == ("degraded" if "QDRANT_URL" in served.env else "ok")

        # Register, then log in with JSON and with the OAuth2 form
        credentials = {"email": USER_EMAIL, "password": PASSWORD}
        registered = client.post("/api/v1/auth/register", json=credentials)
        assert registered.status_code == 201, registered.text
        login = token_pair(client.post("/api/v1/auth/login", json=credentials))
        form = token_pair(
            client.post("/api/v1/auth/token", data={"username": USER_EMAIL, "password": PASSWORD})
        )
        assert form["access_token"] != login["access_token"]

        # Guarded routes: anonymous 401, the user 200 on self, 403 on the admin list
        problem(client.get("/api/v1/users/me"), 401)
        me = client.get("/api/v1/users/me", headers=bearer(login["access_token"]))
        assert me.status_code == 200, me.text
        assert me.json()["email"] == USER_EMAIL
        assert (
            client.get("/api/v1/users/me", headers=bearer(form["access_token"])).status_code == 200
        )
        problem(client.get("/api/v1/users", headers=bearer(login["access_token"])), 403)

        # The admin made by `create-admin` may list users
        admin = token_pair(
            client.post(
                "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
        )
        listed = client.get("/api/v1/users", headers=bearer(admin["access_token"]))
        assert listed.status_code == 200, listed.text
        assert USER_EMAIL in listed.text
        assert ADMIN_EMAIL in listed.text

        # Refresh rotates the pair; a second use at once (two tabs) is 409 and revokes nothing;
        # reusing the old token once its successor was used revokes the whole family
        rotated = token_pair(
            client.post("/api/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})
        )
        assert rotated["refresh_token"] != login["refresh_token"]
        assert rotated["access_token"] != login["access_token"]
        twin = client.post("/api/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})
        problem(twin, 409)
        newer = token_pair(
            client.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
        )
        reused = client.post("/api/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})
        problem(reused, 401)
        newest = client.post("/api/v1/auth/refresh", json={"refresh_token": newer["refresh_token"]})
        problem(newest, 401)

        # Another session of the same user (the form login) is a different family
        token_pair(
            client.post("/api/v1/auth/refresh", json={"refresh_token": form["refresh_token"]})
        )


def test_streamed_chat_in_production(served: Server, answers: dict[str, Any]) -> None:
    """A chat variant answers over server-sent events (the fake provider, explicitly allowed)."""
    if "chat" not in answers["ai_features"]:
        pytest.skip("this variant has no chat")
    with httpx.Client(base_url=served.base_url, timeout=10) as client:
        credentials = {"email": "chatter@example.com", "password": PASSWORD}
        assert client.post("/api/v1/auth/register", json=credentials).status_code == 201
        headers = bearer(
            token_pair(client.post("/api/v1/auth/login", json=credentials))["access_token"]
        )
        problem(client.post("/api/v1/ai/chat", json={"message": "hi", "stream": True}), 401)

        body = {"message": "hello from the boot test", "stream": True}
        with client.stream("POST", "/api/v1/ai/chat", json=body, headers=headers) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = [line for line in response.iter_lines() if line]
        names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
        data = [
            json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")
        ]
        assert names == ["delta"] * (len(names) - 1) + ["done"], names
        assert "".join(item["content"] for item in data[:-1]) == "Echo: hello from the boot test"

        conversation = client.get(
            f"/api/v1/ai/conversations/{data[-1]['conversation_id']}", headers=headers
        )
        assert conversation.status_code == 200, conversation.text
        assert [m["role"] for m in conversation.json()["messages"]] == ["user", "assistant"]
        usage = client.get("/api/v1/ai/usage", headers=headers).json()
        assert usage["used_tokens"] == data[-1]["usage"]["total_tokens"] > 0
        assert usage["reserved_tokens"] == 0


def test_documents_upload_list_search_and_delete_over_http(
    served: Server, answers: dict[str, Any]
) -> None:
    """Upload, list, search (and, with chat, a grounded and cited answer), then delete."""
    if "documents" not in answers["ai_features"]:
        pytest.skip("the variant has no documents")
    with httpx.Client(base_url=served.base_url, timeout=30) as client:
        tokens = {}
        for email in ("docs-owner@example.com", "docs-other@example.com"):
            credentials = {"email": email, "password": PASSWORD}
            assert client.post("/api/v1/auth/register", json=credentials).status_code == 201
            login = token_pair(client.post("/api/v1/auth/login", json=credentials))
            tokens[email] = bearer(login["access_token"])
        owner, other = tokens["docs-owner@example.com"], tokens["docs-other@example.com"]
        upload = {"file": ("notes.md", b"# Notes\n\nThe boot canary is walrus-9431.\n")}

        if "QDRANT_URL" in served.env:  # a Qdrant server that is down: 503, SQL routes serve
            ready = client.get("/health/ready").json()
            assert ready["checks"]["vector_store"]["status"] == "degraded"
            problem(client.post("/api/v1/documents", files=upload, headers=owner), 503)
            assert client.get("/api/v1/documents", headers=owner).json()["total"] == 0
            return

        created = client.post("/api/v1/documents", files=upload, headers=owner)
        assert created.status_code == 201, created.text
        document = created.json()
        listed = client.get("/api/v1/documents", headers=owner).json()
        assert [item["id"] for item in listed["items"]] == [document["id"]]
        query = {"query": "boot canary walrus-9431", "limit": 5}
        hits = client.post("/api/v1/documents/search", json=query, headers=owner).json()["hits"]
        assert hits[0]["document_id"] == document["id"]
        assert "walrus-9431" in hits[0]["text"]
        assert hits[0]["page"] == 1
        theirs = client.post("/api/v1/documents/search", json=query, headers=other).json()
        assert theirs["hits"] == []
        problem(client.get(f"/api/v1/documents/{document['id']}", headers=other), 404)
        if "chat" in answers["ai_features"]:  # a chat grounded in the caller's documents
            ask = {"message": "What is the boot canary?", "documents": True}
            grounded = client.post("/api/v1/ai/chat", json=ask, headers=owner)
            assert grounded.status_code == 200, grounded.text
            assert "walrus-9431" in grounded.json()["content"]
            assert "[1]" in grounded.json()["content"]
            cited = [{"index": 1, "document_id": document["id"], "page": 1}]
            assert grounded.json()["citations"] == cited
            theirs = client.post("/api/v1/ai/chat", json=ask, headers=other).json()
            assert "walrus-9431" not in theirs["content"]
            assert theirs["citations"] == []
        deleted = client.delete(f"/api/v1/documents/{document['id']}", headers=owner)
        assert deleted.status_code == 204
        after = client.post("/api/v1/documents/search", json=query, headers=owner).json()
        assert after["hits"] == []


def test_docs_are_off_in_production(served: Server) -> None:
    with httpx.Client(base_url=served.base_url, timeout=10) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(path).status_code == 404, path


def test_metrics_need_the_metrics_token(served: Server) -> None:
    with httpx.Client(base_url=served.base_url, timeout=10) as client:
        assert client.get("/metrics").status_code in {401, 403, 404}
        wrong = client.get("/metrics", headers=bearer("not-the-token"))
        assert wrong.status_code in {401, 403, 404}
        scraped = client.get("/metrics", headers=bearer(served.env["METRICS_TOKEN"]))
        assert scraped.status_code == 200, scraped.text
        assert "# TYPE " in scraped.text


def test_untrusted_host_is_refused(served: Server) -> None:
    # Health probes are exempt by design (kubelets send the pod IP); the API is not.
    url = f"{served.base_url}/api/v1/users/me"
    problem(httpx.get(url, headers={"Host": "evil.example"}), 400)
    problem(httpx.get(url, headers={"Host": "localhost"}), 401)


def test_sigterm_stops_the_server_with_exit_code_zero(
    installed: Path, answers: dict[str, Any], migrated_database: str
) -> None:
    server = start_server(installed, answers, service_env(answers, migrated_database))
    try:
        wait_until_ready(server)
        server.process.send_signal(signal.SIGTERM)
        try:
            code = server.process.wait(timeout=SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {SHUTDOWN_TIMEOUT} s after SIGTERM:\n{server.output()}")
        assert code == 0, f"exit code {code} after SIGTERM:\n{server.output()}"
    finally:
        stop(server)


@pytest.mark.parametrize(
    ("secret_key", "reason"),
    [
        ("x" * 16, "too short"),
        ("change-me-change-me-change-me-change-me", "placeholder"),
        ("a" * 32, "guessable"),
    ],
    ids=["short", "placeholder", "guessable"],
)
def test_production_refuses_to_start_with_a_weak_secret_key(
    installed: Path,
    answers: dict[str, Any],
    migrated_database: str,
    secret_key: str,
    reason: str,
) -> None:
    env = service_env(answers, migrated_database, SECRET_KEY=secret_key)
    server = start_server(installed, answers, env)
    try:
        code = server.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"started with a {reason} SECRET_KEY:\n{server.output()}")
    finally:
        stop(server)
    assert code != 0
    assert "SECRET_KEY" in server.output(), server.output()
