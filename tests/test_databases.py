"""The server databases for real: PostgreSQL and MySQL/MariaDB variants are rendered, installed,
migrated (and checked for drift, downgraded, upgraded again) on the local servers, tested with
booted and walked over HTTP, raced from outside, and, on throwaway PostgreSQL and MariaDB
servers of their own, taken through an outage and back. (Their own suites run against the real
servers in test_boot.py.)

The shared servers (PostgreSQL on 127.0.0.1:5432 as `postgres`, MariaDB on 127.0.0.1:3306 as
`root`, both without passwords) are only ever given uniquely named databases, which are
dropped afterwards; they are never stopped.
"""

from __future__ import annotations

import glob
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import free_port, project_env, render

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
PASSWORD = "Vq8#mT2!pLx9zR-outside"  # noqa: S105 - a test account's password
BOOT_TIMEOUT = 60.0
RECOVERY_TIMEOUT = 30.0


@dataclass(frozen=True)
class Server:
    """One of the shared database servers, reached with its own command-line client."""

    database: str  # the template's answer
    scheme: str
    port: int
    admin_url: str

    def execute(self, sql: str, *, port: int | None = None) -> None:
        if self.database == "postgresql":
            command = ["psql", "-h", HOST, "-p", str(port or self.port), "-U", "postgres"]
            command += ["-v", "ON_ERROR_STOP=1", "-qc", sql]
        else:
            command = ["mariadb", "-h", HOST, "-P", str(port or self.port), "-uroot", "-e", sql]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)

    def url(self, name: str, *, port: int | None = None) -> str:
        return f"{self.admin_url.format(port=port or self.port)}/{name}"


SERVERS = {
    "postgresql": Server(
        "postgresql", "postgresql", 5432, "postgresql://postgres@127.0.0.1:{port}"
    ),
    "mysql": Server("mysql", "mysql", 3306, "mysql://root@127.0.0.1:{port}"),
}


@dataclass(frozen=True)
class Project:
    path: Path
    slug: str
    package: str
    server: Server

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            cwd=self.path,
            env=project_env(**(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.path / ".venv/bin/python"), "-c", code)

    def migrations(self, url: str, *calls: str) -> None:
        """Run `migrations.<call>` for each call, on the async form of `url`."""
        body = "; ".join(f"migrations.{call}" for call in calls)
        code = (
            f"from {self.package} import migrations\n"
            f"from {self.package}.dialect import normalize_database_url\n"
            f"url = normalize_database_url({url!r})\n{body}"
        )
        result = self.python(code)
        assert result.returncode == 0, result.stdout + result.stderr


def _unique_name() -> str:
    return f"rampart_{uuid.uuid4().hex[:12]}"


@contextmanager
def fresh_database(server: Server) -> Iterator[str]:
    """A new, empty database on the shared server; dropped afterwards whatever happens."""
    name = _unique_name()
    server.execute(f"CREATE DATABASE {name}")
    try:
        yield server.url(name)
    finally:
        drop = f"DROP DATABASE IF EXISTS {name}"
        if server.database == "postgresql":
            drop += " WITH (FORCE)"
        server.execute(drop)


def _render(database: str, destination: Path) -> Project:
    render(destination, {"database": database, "project_name": f"Db Check {database}"})
    synced = subprocess.run(
        ["uv", "sync", "--quiet"],
        cwd=destination,
        env=project_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert synced.returncode == 0, synced.stderr
    slug = f"db-check-{database}"
    return Project(destination, slug, slug.replace("-", "_"), SERVERS[database])


@pytest.fixture(scope="session")
def render_project(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Project]:
    """Render and install a variant once per session, however many tests use it."""
    rendered: dict[str, Project] = {}

    def render(database: str) -> Project:
        if database not in rendered:
            destination = tmp_path_factory.mktemp(database) / "project"
            rendered[database] = _render(database, destination)
        return rendered[database]

    return render


@pytest.fixture(params=sorted(SERVERS))
def project(request: pytest.FixtureRequest, render_project: Callable[[str], Project]) -> Project:
    return render_project(request.param)


# ------------------------------------------------------------------------------ migrations
def test_migrations_apply_match_the_models_and_round_trip(project: Project) -> None:
    with fresh_database(project.server) as url:
        migrated = project.run(
            str(project.path / ".venv/bin" / project.slug),
            "migrate",
            env={"DATABASE_URL": url, "ENVIRONMENT": "test"},
        )
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        project.migrations(url, "check(url)")
        project.migrations(url, "downgrade(url, 'base')", "upgrade(url)", "check(url)")


# ---------------------------------------------------------------------------- the server
def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {timeout}s")


@dataclass
class Service:
    process: subprocess.Popen[str]
    base_url: str

    def client(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)

    def answers_ready(self) -> bool:
        if self.process.poll() is not None:
            out, _ = self.process.communicate()
            pytest.fail(f"the service exited with {self.process.returncode}:\n{out[-4000:]}")
        try:
            return httpx.get(f"{self.base_url}/health/ready", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False


@contextmanager
def served(project: Project, database_url: str) -> Iterator[Service]:
    """`<slug> serve` as a real production process; SIGTERM at the end must exit 0."""
    port = free_port()
    env = project_env(
        ENVIRONMENT="production",
        SECRET_KEY=secrets.token_urlsafe(36),  # 48 characters
        TRUSTED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url,
        DB_POOL_TIMEOUT_SECONDS="2",
        DB_CONNECT_TIMEOUT_SECONDS="2",
        UNVERIFIED_ACCOUNT_ACCESS="full",  # registers and logs in without a mailbox
    )
    process = subprocess.Popen(
        [
            str(project.path / ".venv/bin" / project.slug),
            "serve",
            "--host",
            HOST,
            "--port",
            str(port),
        ],
        cwd=project.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    service = Service(process, f"http://{HOST}:{port}")
    try:
        _wait_until(service.answers_ready, BOOT_TIMEOUT, "the service becoming ready")
        yield service
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
        assert process.returncode == 0, out[-4000:]
        assert "Traceback" not in out, out[-4000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _register(client: httpx.Client, email: str) -> httpx.Response:
    return client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})


def _login(client: httpx.Client, email: str) -> httpx.Response:
    return client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})


def _at_once(count: int, call: Callable[[], httpx.Response]) -> list[int]:
    """Run `call` in `count` threads released together; their status codes."""
    barrier = threading.Barrier(count)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        status = call().status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(statuses) == count
    return sorted(statuses)


def test_served_flow_and_races_over_http(project: Project) -> None:
    with fresh_database(project.server) as url:
        migrated = project.run(
            str(project.path / ".venv/bin" / project.slug),
            "migrate",
            env={"DATABASE_URL": url, "ENVIRONMENT": "test"},
        )
        assert migrated.returncode == 0, migrated.stderr
        with served(project, url) as service, service.client() as client:
            email = f"walker-{uuid.uuid4().hex[:8]}@example.com"
            assert _register(client, email).status_code == 201
            tokens = _login(client, email).json()
            me = client.get(
                "/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
            )
            assert me.status_code == 200
            assert me.json()["email"] == email
            admin_only = client.get(
                "/api/v1/users", headers={"Authorization": f"Bearer {tokens['access_token']}"}
            )
            assert admin_only.status_code == 403

            rotated = client.post(
                "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
            assert rotated.status_code == 200
            assert rotated.json()["refresh_token"] != tokens["refresh_token"]
            reused = client.post(
                "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
            assert reused.status_code == 409  # inside the concurrent-refresh grace window

            contested = f"race-{uuid.uuid4().hex[:8]}@example.com"
            statuses = _at_once(6, lambda: _register(service.client(), contested))
            assert statuses == [201, 409, 409, 409, 409, 409]

            refresh_token = _login(client, contested).json()["refresh_token"]
            statuses = _at_once(
                2,
                lambda: service.client().post(
                    "/api/v1/auth/refresh", json={"refresh_token": refresh_token}
                ),
            )
            assert statuses.count(200) == 1, statuses


# ------------------------------------------------------------------------------ outages
def _pg_binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail(f"PostgreSQL's {name} is not installed under /usr/lib/postgresql")
    return found[-1]


class ThrowawayPostgres:
    """A PostgreSQL server of the test's own (trust auth, 127.0.0.1 only) that it may stop."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.data, self.sockets, self.log = root / "data", root / "sockets", root / "server.log"

    def _as_postgres(self, *command: str) -> None:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def init(self) -> None:
        self.sockets.mkdir(parents=True)
        shutil.chown(self.root, "postgres", "postgres")
        shutil.chown(self.sockets, "postgres", "postgres")
        self._as_postgres(
            _pg_binary("initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "--no-instructions",
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses={HOST} -c fsync=off"
        self._as_postgres(
            _pg_binary("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.log),
            "-w",
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        self._as_postgres(_pg_binary("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


class ThrowawayMariaDB:
    """A MariaDB server of the test's own (no grant tables, 127.0.0.1 only) that it may kill."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.data = root / "data"
        self.process: subprocess.Popen[bytes] | None = None

    def init(self) -> None:
        result = subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.data}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("mariadbd") or "/usr/sbin/mariadbd",
                "--no-defaults",
                f"--datadir={self.data}",
                f"--port={self.port}",
                f"--bind-address={HOST}",
                f"--socket={self.root / 'mariadb.sock'}",
                f"--pid-file={self.root / 'mariadb.pid'}",
                f"--log-error={self.root / 'server.log'}",
                "--user=root",
                "--skip-grant-tables",
                "--innodb-flush-log-at-trx-commit=2",  # survives a killed process
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def accepts() -> bool:
            try:
                SERVERS["mysql"].execute("SELECT 1", port=self.port)
            except subprocess.CalledProcessError:
                return False
            return True

        _wait_until(accepts, 60, "the throwaway MariaDB accepting connections")

    def stop(self, mode: str = "immediate") -> None:
        assert self.process is not None
        # Only this test's own server, by its pid: like a crash, no goodbye to the clients.
        if mode == "immediate":
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=60)
        self.process = None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture(params=["postgresql", "mysql"])
def throwaway_server(
    request: pytest.FixtureRequest,
) -> Iterator[ThrowawayPostgres | ThrowawayMariaDB]:
    # Not pytest's tmp_path: its parents are private to root and PostgreSQL runs as postgres.
    root = Path(tempfile.mkdtemp(prefix=f"rampart-{request.param}-"))
    kind = ThrowawayPostgres if request.param == "postgresql" else ThrowawayMariaDB
    server = kind(root, free_port())
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.running():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_database_outage_is_503_and_the_service_recovers(
    render_project: Callable[[str], Project],
    throwaway_server: ThrowawayPostgres | ThrowawayMariaDB,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database = "postgresql" if isinstance(throwaway_server, ThrowawayPostgres) else "mysql"
    project = render_project(database)
    server = project.server
    server.execute("CREATE DATABASE app", port=throwaway_server.port)
    url = server.url("app", port=throwaway_server.port)
    migrated = project.run(
        str(project.path / ".venv/bin" / project.slug),
        "migrate",
        env={"DATABASE_URL": url, "ENVIRONMENT": "test"},
    )
    assert migrated.returncode == 0, migrated.stderr

    with served(project, url) as service, service.client(timeout=2.0) as client:
        email = f"outage-{uuid.uuid4().hex[:8]}@example.com"
        assert _register(client, email).status_code == 201
        assert _login(client, email).status_code == 200

        throwaway_server.stop("immediate")
        started = time.monotonic()
        ready = client.get("/health/ready")  # the client's 2 s timeout bounds the answer
        ready_seconds = time.monotonic() - started
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"]["status"] == "fail"
        assert client.get("/health/live").status_code == 200
        started = time.monotonic()
        login = _login(client, email)
        login_seconds = time.monotonic() - started
        assert login.status_code == 503
        assert login.headers["content-type"].startswith("application/problem+json")
        assert login.json()["code"] == "database_unavailable"
        assert "Traceback" not in login.text

        throwaway_server.start()
        started = time.monotonic()
        _wait_until(service.answers_ready, RECOVERY_TIMEOUT, "readiness after the outage")
        recovery_seconds = time.monotonic() - started
        assert _login(client, email).status_code == 200
    with capsys.disabled():
        print(
            f"\n{database} outage: ready 503 in {ready_seconds:.3f}s, "
            f"login 503 in {login_seconds:.3f}s, ready again {recovery_seconds:.3f}s after restart"
        )
