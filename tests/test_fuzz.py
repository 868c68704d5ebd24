"""Slow tier: Schemathesis fuzzes booted variants from the OpenAPI document they serve.

A production-mode server (docs published by explicit opt-in, limits raised so the fuzzer explores
instead of collecting 429s) is fuzzed anonymously and then as an admin, on SQLite and on
PostgreSQL. Every Schemathesis check runs: no server error, and no response that contradicts the
document (status, content type, headers, body schema, Allow on 405, invalid input accepted, valid
input refused, auth declared but ignored). tests/schemathesis.toml lists the rejections the
document cannot express. The run is bounded by examples per operation, not by time, and its seed
is fixed (RAMPART_FUZZ_SEED picks another) so a failure reproduces.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import (
    REPO,
    ProjectCache,
    assert_ok,
    describe,
    fresh_database,
    in_variant_group,
    repo_tool,
    run,
    variant_answers,
)
from servers import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    Server,
    bearer,
    cli,
    service_env,
    start_server,
    stop,
    token_pair,
    wait_until_ready,
)

pytestmark = pytest.mark.slow

# Booted by test_boot.py as well, so their installs are shared: one SQLite, one PostgreSQL.
FUZZ_VARIANTS = ["compose-sqlite-memory", "kubernetes-postgresql-redis-chat"]
MAX_EXAMPLES = 40  # per operation and phase; 30 missed the NUL filter 500 on PostgreSQL
SEED = os.environ.get("RAMPART_FUZZ_SEED", "20260101")
FUZZ_TIMEOUT = 600
GENEROUS_LIMIT = "100000/minute"
# Operations that end the admin's own session or account: fuzzed anonymously only, so the admin
# run keeps its credentials to the end.
SELF_ENDING = (
    "POST /api/v1/auth/logout-all",
    "DELETE /api/v1/users/me",
    "DELETE /api/v1/auth/sessions/{session_id}",  # the admin's own session is one of its ids
    "DELETE /api/v1/users/{user_id}/sessions",  # and the admin's own id one of these
)


@pytest.fixture(scope="module", params=in_variant_group(FUZZ_VARIANTS))
def served(
    request: pytest.FixtureRequest,
    project_cache: ProjectCache,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """A production-mode server with its OpenAPI document published and one admin."""
    variant: str = request.param
    answers = variant_answers(variant)
    installed = project_cache.installed(variant)
    with fresh_database(answers["database"], tmp_path_factory.mktemp("fuzz-db")) as url:
        env = service_env(
            answers,
            url,
            DOCS_ENABLED="true",
            RATE_LIMIT_DEFAULT=GENEROUS_LIMIT,
            RATE_LIMIT_AUTH=GENEROUS_LIMIT,
            RATE_LIMIT_LOGIN_FAILURES=GENEROUS_LIMIT,
            RATE_LIMIT_LOGIN_FAILURES_PER_CLIENT=GENEROUS_LIMIT,
        )
        assert_ok(run(cli(answers, "migrate"), cwd=installed, env=env))
        assert_ok(
            run(
                cli(answers, "create-admin", "--email", ADMIN_EMAIL, "--password-stdin"),
                cwd=installed,
                env=env,
                input=ADMIN_PASSWORD + "\n",
            )
        )
        server = start_server(installed, answers, env)
        try:
            wait_until_ready(server)
            yield server
        finally:
            stop(server)


def violations(junit: Path) -> list[str]:
    """One line per failing operation: its name and the codes of what it broke."""
    lines = []
    for case in ElementTree.parse(junit).getroot().iter("testcase"):  # noqa: S314 - our own report
        problems = [*case.iter("failure"), *case.iter("error")]
        if problems:
            codes = sorted({problem.get("message") or problem.tag for problem in problems})
            lines.append(f"{case.get('name')}: {', '.join(codes)}")
    return lines


def fuzz(server: Server, directory: Path, *options: str) -> None:
    junit = directory / "junit.xml"
    result = run(
        [
            repo_tool("st"), "--config-file", REPO / "tests" / "schemathesis.toml", "run",
            f"{server.base_url}/openapi.json",
            "--checks", "all",
            "--max-examples", str(MAX_EXAMPLES),
            "--seed", SEED,
            "--workers", "1",
            "--continue-on-failure",  # every kind of failure of an operation, not the first
            "--request-timeout", "30",
            "--generation-database", "none",
            "--report", "junit", "--report-junit-path", junit,
            "--no-color",
            *options,
        ],
        cwd=directory,
        timeout=FUZZ_TIMEOUT,
    )  # fmt: skip
    if result.returncode != 0:
        found = violations(junit) if junit.is_file() else ["(no report)"]
        pytest.fail(
            f"Schemathesis found {len(found)} operations that break the contract:\n"
            + "\n".join(found)
            + f"\n\n{describe(result, tail=150)}\n\nserver log:\n{server.output()}"
        )


def admin_token(server: Server) -> str:
    credentials = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    pair: dict[str, Any] = token_pair(
        httpx.post(f"{server.base_url}/api/v1/auth/login", json=credentials, timeout=10)
    )
    token: str = pair["access_token"]
    return token


def test_anonymous_fuzzing_finds_no_contract_violation(served: Server, tmp_path: Path) -> None:
    fuzz(served, tmp_path)


def test_admin_fuzzing_finds_no_contract_violation(served: Server, tmp_path: Path) -> None:
    token = admin_token(served)
    excluded = [option for name in SELF_ENDING for option in ("--exclude-name", name)]
    fuzz(served, tmp_path, "--header", f"Authorization: Bearer {token}", *excluded)
    # The run was an admin's to the end, not an anonymous one that lost its credentials.
    still = httpx.get(f"{served.base_url}/api/v1/users", headers=bearer(token), timeout=10)
    assert still.status_code == 200, still.text
