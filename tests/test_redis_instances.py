"""Slow tier: two instances of the Redis variant share one Redis they did not start themselves.

The test starts its own Redis on a free port (never the shared one), boots two `serve`
processes against it and one database, and proves: one limit counted across both instances,
revocations seen by the other instance at once, and a Redis killed under load: limits still
enforced in each instance's memory, readiness 200 `degraded`, and shared counting back by itself
when Redis returns, with the hits admitted during the outage handed to it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ProjectCache, assert_ok, free_port, fresh_database, run, variant_answers
from servers import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    PASSWORD,
    Server,
    bearer,
    cli,
    service_env,
    start_server,
    stop,
    token_pair,
    wait_until_ready,
)

VARIANT = "kubernetes-postgresql-redis-chat"  # booted too, so its install is shared
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(VARIANT)]

AUTH_LIMIT = 8
LOAD = 30  # concurrent logins in flight while Redis is killed
RECOVERY_TIMEOUT = 30.0


class RedisServer:
    """A throwaway redis-server on 127.0.0.1 that keeps nothing on disk."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ping = run(["redis-cli", "-p", str(self.port), "ping"], timeout=5)
            if ping.stdout.strip() == "PONG":
                return
            time.sleep(0.1)  # polling interval
        pytest.fail("throwaway redis-server did not answer")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def instances(
    project_cache: ProjectCache,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, Server]]:
    project = project_cache.installed(VARIANT)
    answers = variant_answers(VARIANT)
    with fresh_database(answers["database"], tmp_path_factory.mktemp("db")) as url:
        env = service_env(
            answers, url, REDIS_URL=redis_server.url, RATE_LIMIT_AUTH=f"{AUTH_LIMIT}/minute"
        )
        assert_ok(run(cli(answers, "migrate"), cwd=project, env=env))
        assert_ok(
            run(
                cli(answers, "create-admin", "--email", ADMIN_EMAIL, "--password-stdin"),
                cwd=project,
                env=env,
                input=ADMIN_PASSWORD + "\n",
            )
        )
        first = start_server(project, answers, env)
        second = start_server(project, answers, env)
        try:
            wait_until_ready(first)
            wait_until_ready(second)
            yield first, second
        finally:
            stop(first)
            stop(second)


def _login(server: Server, email: str, password: str) -> dict[str, Any]:
    return token_pair(
        httpx.post(
            f"{server.base_url}/api/v1/auth/login", json={"email": email, "password": password}
        )
    )


def _ready_status(server: Server) -> str:
    body: dict[str, Any] = httpx.get(f"{server.base_url}/health/ready", timeout=5).json()
    return str(body["status"])


def _metric(server: Server, name: str) -> float:
    body = httpx.get(f"{server.base_url}/metrics", headers=bearer(server.env["METRICS_TOKEN"]))
    line = next(line for line in body.text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


def _answers_within(url: str, token: str, status: int) -> None:
    """The other instance applies a change within the invalidation channel's lag (a few
    milliseconds; bench/ measures it): poll, bounded so that a broken build fails."""
    deadline = time.monotonic() + 5
    while httpx.get(url, headers=bearer(token)).status_code != status:
        assert time.monotonic() < deadline, f"{url} did not answer {status} within 5 s"
        time.sleep(0.002)  # polling interval


def test_two_instances_share_limits_revocations_and_survive_redis_being_killed(
    instances: tuple[Server, Server], redis_server: RedisServer
) -> None:
    first, second = instances
    # Three auth-policy hits: the admin's login, the user's registration and login.
    admin = _login(first, ADMIN_EMAIL, ADMIN_PASSWORD)
    registered = httpx.post(
        f"{second.base_url}/api/v1/auth/register",
        json={"email": "member@example.com", "password": PASSWORD},
    )
    assert registered.status_code == 201
    user_id = registered.json()["id"]
    user = _login(second, "member@example.com", PASSWORD)

    # Revocations and role changes made on one instance reach the other's principal cache.
    role_url = f"/api/v1/users/{user_id}/roles/admin"
    assert (
        httpx.put(first.base_url + role_url, headers=bearer(admin["access_token"])).status_code
        == 204
    )
    listing = f"{second.base_url}/api/v1/users"
    _answers_within(listing, user["access_token"], 200)
    assert httpx.get(listing, headers=bearer(user["access_token"])).status_code == 200  # cached
    assert (
        httpx.delete(first.base_url + role_url, headers=bearer(admin["access_token"])).status_code
        == 204
    )
    _answers_within(listing, user["access_token"], 403)
    me = f"{second.base_url}/api/v1/users/me"
    assert httpx.get(me, headers=bearer(user["access_token"])).status_code == 200  # cached
    logout = httpx.post(
        f"{first.base_url}/api/v1/auth/logout", json={"refresh_token": user["refresh_token"]}
    )
    assert logout.status_code == 204
    _answers_within(me, user["access_token"], 401)
    assert _metric(second, 'principal_cache_lookups_total{result="hit"}') >= 2

    # One limit across both instances: the remaining auth budget runs out wherever it is spent.
    statuses = []
    for index in range(AUTH_LIMIT - 3 + 1):
        server = (first, second)[index % 2]
        response = httpx.post(
            f"{server.base_url}/api/v1/auth/login",
            json={"email": f"nobody{index}@example.com", "password": "not-a-real-one"},
        )
        statuses.append(response.status_code)
    assert statuses == [401] * (AUTH_LIMIT - 3) + [429]
    assert (
        httpx.post(
            f"{first.base_url}/api/v1/auth/login", json={"email": "x@example.com", "password": "y"}
        ).status_code
        == 429
    )

    # Redis is killed under load: no request fails, both instances stay ready (degraded) and
    # keep enforcing the limits in their own memory.
    def attempt(index: int, server: Server | None = None) -> int:
        server = server or (first, second)[index % 2]
        return httpx.post(
            f"{server.base_url}/api/v1/auth/login",
            json={"email": f"load{index}@example.com", "password": "not-a-real-one"},
            timeout=30,
        ).status_code

    with ThreadPoolExecutor(max_workers=LOAD) as pool:
        during = [pool.submit(attempt, index) for index in range(LOAD)]
        redis_server.stop()
        statuses = [future.result() for future in during]
    assert set(statuses) <= {401, 429}, statuses
    for server in (first, second):
        ready = httpx.get(f"{server.base_url}/health/ready", timeout=5)
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["rate_limit_storage"]["status"] == "degraded"
        assert httpx.get(f"{server.base_url}/health/live").status_code == 200
        # Never unlimited: each instance refuses once its own count is spent.
        refused = [attempt(index, server) for index in range(AUTH_LIMIT + 1)]
        assert refused[-1] == 429
        assert _metric(server, "rate_limit_storage_degraded") == 1
    assert httpx.get(listing, headers=bearer(admin["access_token"])).status_code == 200

    # Redis returns, empty: both switch back by themselves, after handing it the hits they
    # admitted alone, so the budget the outage spent stays spent, in Redis too.
    redis_server.start()
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while {_ready_status(first), _ready_status(second)} != {"ok"} and time.monotonic() < deadline:
        time.sleep(0.2)  # polling interval
    assert _ready_status(first) == "ok"
    assert _ready_status(second) == "ok"
    assert [attempt(index) for index in range(2)] == [429, 429]  # one on each instance
    keys = run(["redis-cli", "-p", str(redis_server.port), "--scan"], timeout=10).stdout.split()
    assert any("/auth/" in key for key in keys), keys
    for server in (first, second):
        assert _metric(server, "rate_limit_storage_degraded") == 0
        assert _metric(server, 'rate_limit_storage_transitions_total{to="redis"}') == 1
