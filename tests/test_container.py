"""Slow tier: the image of each deploy target builds from the rendered Dockerfile and serves.

The image is built by podman on local base images (tests/containers.py), from a locked render,
then `migrate`, `create-admin` and the server run the way the Compose file runs them: read-only
root with a tmpfs /tmp, the image's non-root user, no capabilities, no privilege gain, and the
Compose file's memory limits. The server is checked over HTTP (health, a login) and through the
image's own HEALTHCHECK, then stopped with SIGTERM.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import (
    INSTALL_TIMEOUT,
    SUPPORTED_VARIANTS,
    assert_ok,
    free_port,
    fresh_database,
    project_env,
    render,
    run,
    variant_answers,
)
from containers import (
    HOST_FROM_CONTAINER,
    HOST_LOOPBACK_NETWORK,
    BaseImages,
    Container,
    Podman,
    base_images,
    build,
    cache_directory,
    hardening_flags,
    image_size,
    start,
    wait_until_ready,
)
from servers import ADMIN_EMAIL, ADMIN_PASSWORD, SHUTDOWN_TIMEOUT, bearer, token_pair

# One worker builds the images: they share the base images cached in ~/.cache.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("containers")]

# One image per deploy target; between them SQLite and PostgreSQL, memory and Redis limits.
CONTAINER_VARIANTS = ["compose-sqlite-memory", "kubernetes-postgresql-redis"]
APP_UID = "10001"
EROFS = "Read-only file system"
MEBIBYTE = 1024 * 1024


@pytest.fixture(scope="module")
def podman() -> Podman:
    return Podman.configure(cache_directory())


@pytest.fixture(scope="module")
def base(podman: Podman) -> BaseImages:
    return base_images(podman)


# ----------------------------------------------------------------------------- helpers
def memory_limits(project: Path) -> dict[str, str]:
    """The memory limit of each service that runs the image, as the Compose file sets it."""
    compose = yaml.safe_load((project / "compose.yaml").read_text(encoding="utf-8"))
    return {
        name: service["deploy"]["resources"]["limits"]["memory"]
        for name, service in compose["services"].items()
        if name in {"app", "migrate"}
    }


def in_bytes(limit: str) -> int:
    units = {"K": 1024, "M": MEBIBYTE, "G": 1024 * MEBIBYTE}
    return int(limit[:-1]) * units[limit[-1].upper()]


def container_database_url(url: str) -> str:
    """The same database seen from a container: the host's loopback through slirp4netns."""
    if url.startswith("sqlite"):
        return "sqlite:////data/app.db"
    return url.replace("@127.0.0.1:", f"@{HOST_FROM_CONTAINER}:")


@pytest.fixture
def env_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "service.env"
    path.touch(mode=0o600)
    yield path
    path.unlink()


def write_settings(path: Path, answers: dict[str, Any], database_url: str) -> None:
    settings = {
        "SECRET_KEY": secrets.token_urlsafe(48),
        "METRICS_TOKEN": secrets.token_urlsafe(32),
        "TRUSTED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": container_database_url(database_url),
        "MFA_REQUIRED_ROLES": "[]",  # the admin logs in with a password only: no authenticator here
    }
    if answers["rate_limit_backend"] == "redis":
        settings["REDIS_URL"] = f"redis://{HOST_FROM_CONTAINER}:6379/0"
    path.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))


def proc_status(container: Container) -> dict[str, str]:
    code, out, err = container.exec("cat", "/proc/self/status")
    assert code == 0, err
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def assert_hardened(container: Container, podman: Podman, memory: str) -> None:
    """Non-root, no capability at all, no privilege gain, read-only code, memory bounded."""
    status = proc_status(container)
    assert status["Uid"].split()[:2] == [APP_UID, APP_UID], status["Uid"]
    assert status["Gid"].split()[:2] == [APP_UID, APP_UID], status["Gid"]
    for capability_set in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[capability_set], 16) == 0, (capability_set, status[capability_set])
    assert status["NoNewPrivs"].strip() == "1"
    for target in ("/app/.venv/bin/injected", "/etc/injected", "/injected"):
        code, _, err = container.exec("touch", target)
        assert code != 0, f"{target} is writable"
        assert EROFS in err, err
    assert container.exec("touch", "/tmp/scratch")[0] == 0  # noqa: S108 - the container's tmpfs
    host_config = podman.inspect(container.name)[0]["HostConfig"]
    assert isinstance(host_config, dict)
    assert host_config["Memory"] == in_bytes(memory)
    assert host_config["ReadonlyRootfs"] is True


def healthcheck(podman: Podman, container: Container) -> tuple[int, str]:
    code, out, err = podman.attempt("healthcheck", "run", container.name, timeout=60)
    return code, (out + err).strip()


# -------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("variant", CONTAINER_VARIANTS)
def test_image_builds_and_serves_read_only_as_non_root(
    variant: str,
    podman: Podman,
    base: BaseImages,
    env_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    answers = variant_answers(variant)
    project = render(tmp_path / "project", SUPPORTED_VARIANTS[variant])
    # The build installs exactly the lock (`uv sync --locked`), as a bootstrapped project has it.
    assert_ok(run(["uv", "lock"], cwd=project, env=project_env(), timeout=INSTALL_TIMEOUT))
    image = f"localhost/{answers['project_slug']}:{variant}"
    build(podman, project, image, base)

    size = image_size(podman, image)
    with capsys.disabled():
        print(f"\n{variant}: image {image} is {size / MEBIBYTE:.0f} MiB")
    assert 30 * MEBIBYTE < size < 2048 * MEBIBYTE  # sanity, not a budget

    inspected = podman.inspect(image)[0]
    assert inspected["User"] == f"{APP_UID}:{APP_UID}"
    # Exec form survives the build (the OCI format would have dropped HEALTHCHECK altogether).
    health = inspected.get("Healthcheck")
    assert isinstance(health, dict), inspected
    assert health["Test"][:2] == ["CMD", "python"], health

    limits = memory_limits(project)
    suffix = uuid.uuid4().hex[:8]
    volume = f"rampart-data-{suffix}"
    volumes = [f"{volume}:/data"] if answers["database"] == "sqlite" else []
    containers: list[Container] = []
    podman("volume", "create", volume)
    try:
        with fresh_database(answers["database"], tmp_path / "db") as database_url:
            write_settings(env_file, answers, database_url)
            # `migrate` as Compose runs it: SQLite's needs no network at all.
            migrate_network = "none" if answers["database"] == "sqlite" else HOST_LOOPBACK_NETWORK
            migrate_flags = hardening_flags(env_file, limits["migrate"], volumes, migrate_network)
            migrated = podman("run", "--rm", *migrate_flags, image, "migrate")
            assert "migrated" in migrated, migrated
            podman(
                "run", "--rm", "--interactive", *migrate_flags, image,
                "create-admin", "--email", ADMIN_EMAIL, "--password-stdin",
                input=ADMIN_PASSWORD + "\n",
            )  # fmt: skip

            port = free_port()
            app_flags = hardening_flags(env_file, limits["app"], volumes)
            server = start(
                podman, f"rampart-app-{suffix}", image,
                [*app_flags, "--publish", f"127.0.0.1:{port}:8000"],
            )  # fmt: skip
            containers.append(server)
            base_url = f"http://127.0.0.1:{port}"
            wait_until_ready(server, base_url)
            assert_hardened(server, podman, limits["app"])

            with httpx.Client(base_url=base_url, timeout=10) as client:
                assert client.get("/health/live").status_code == 200
                ready = client.get("/health/ready")
                assert ready.status_code == 200, ready.text
                assert ready.json()["status"] == "ok", ready.text
                code, report = healthcheck(podman, server)
                assert code == 0, report
                assert "unhealthy" not in report, report

                admin = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
                pair = token_pair(client.post("/api/v1/auth/login", json=admin))
                users = client.get("/api/v1/users", headers=bearer(pair["access_token"]))
                assert users.status_code == 200, users.text
                assert ADMIN_EMAIL in users.text

            # The HEALTHCHECK can fail: the same image with nothing listening is unhealthy.
            idle = start(
                podman, f"rampart-idle-{suffix}", image,
                [*app_flags, "--entrypoint", "python"],
                "-c", "import signal; signal.pause()",
            )  # fmt: skip
            containers.append(idle)
            code, report = healthcheck(podman, idle)
            assert code != 0, report
            assert "unhealthy" in report, report

            # SIGTERM (podman stop) ends the server cleanly, within the grace period.
            podman("stop", "--time", str(int(SHUTDOWN_TIMEOUT)), server.name, timeout=60)
            state = server.state()
            assert state["ExitCode"] == 0, f"exit {state['ExitCode']}\n{server.logs()}"
            logs = server.logs()
            assert "Traceback" not in logs, logs
            json.loads(logs.strip().splitlines()[-1])  # production logs are JSON lines
    finally:
        for container in containers:
            container.remove()
        podman.attempt("volume", "rm", "--force", volume)
