"""Real server processes of rendered projects: start, wait for readiness, inspect, stop.

Servers bind 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import free_port, project_env

PASSWORD = "Vq8#mT2!pLx9zR"  # noqa: S105 - a throwaway account of a test server
ADMIN_PASSWORD = "Hw4$kN7@qRz2Lp"  # noqa: S105 - likewise
ADMIN_EMAIL = "admin@example.com"
USER_EMAIL = "user@example.com"
READY_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 20.0
# A generated suite takes 4-5 min alone; beside another worker's suite on two cores it has
# taken up to 15. The bound is for a hang, not for a slow machine.
SUITE_TIMEOUT = 1800
REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path
    env: Mapping[str, str]

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-6000:]


# ------------------------------------------------------------------------------ helpers
def service_env(answers: Mapping[str, Any], database_url: str, **overrides: str) -> dict[str, str]:
    """Production settings the way a deployment sets them."""
    settings = {
        "ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_urlsafe(36),  # 48 characters
        "TRUSTED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url,
        "METRICS_TOKEN": secrets.token_urlsafe(32),
        # These flows register and log in without a mailbox or an authenticator: they relax
        # the production defaults that require a verified email and MFA for admins (the
        # generated suite tests those defaults).
        "UNVERIFIED_ACCOUNT_ACCESS": "full",
        "MFA_REQUIRED_ROLES": "[]",
    }
    if answers["rate_limit_backend"] == "redis":
        settings["REDIS_URL"] = REDIS_URL
        # This server's counters and invalidations only (its replicas share them): other
        # servers and test runs share the Redis server.
        run_id = f"boot-{uuid.uuid4().hex[:16]}"
        settings["RATE_LIMIT_KEY_PREFIX"] = f"{run_id}:ratelimit"
        settings["PRINCIPAL_CACHE_CHANNEL"] = f"{run_id}:principals"
    if answers["ai_features"]:
        settings["AI_ALLOW_FAKE_IN_PRODUCTION"] = "true"  # no provider to reach from a test
    if "documents" in answers["ai_features"] and answers["deploy_target"] == "kubernetes":
        # Kubernetes variants talk to a Qdrant server; none runs on this machine, so the
        # service starts degraded and its document routes answer 503.
        settings["QDRANT_URL"] = f"http://127.0.0.1:{free_port()}"
    return project_env(**{**settings, **overrides})


def cli(answers: Mapping[str, Any], *args: str) -> list[str]:
    return ["uv", "run", answers["project_slug"], *args]


def start_server(project: Path, answers: Mapping[str, Any], env: Mapping[str, str]) -> Server:
    port = free_port()
    log = project.parent / f"{project.name}-serve-{port}.log"
    if "documents" in answers["ai_features"] and "QDRANT_URL" not in env:
        # Embedded Qdrant locks its directory: every server gets its own.
        env = {**env, "QDRANT_PATH": str(project.parent / f"{project.name}-qdrant-{port}")}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            cli(answers, "serve", "--host", "127.0.0.1", "--port", str(port)),
            cwd=project,
            env=dict(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so cleanup reaches every child
        )
    return Server(process, f"http://127.0.0.1:{port}", log, env)


def wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"server exited with {server.process.returncode}:\n{server.output()}")
        try:
            response = httpx.get(f"{server.base_url}/health/ready", timeout=2)
        except httpx.TransportError as error:
            last = repr(error)
        else:
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text}"
        time.sleep(0.2)  # polling interval, not a wait for timing
    pytest.fail(f"/health/ready not 200 within {READY_TIMEOUT} s ({last}):\n{server.output()}")


def stop(server: Server) -> None:
    """Last-resort cleanup: kill whatever is left of the server's process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert an RFC 9457 problem with a stable code, and return its body."""
    assert response.status_code == status, (
        f"expected {status}: {response.status_code} {response.text}"
    )
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body.get("code"), body
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_pair(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, f"{response.status_code} {response.text}"
    pair: dict[str, Any] = response.json()
    assert {"access_token", "refresh_token", "token_type", "expires_in"} <= pair.keys(), pair
    assert pair["token_type"].lower() == "bearer"
    return pair
