"""Render a variant, install, migrate and seed it, boot it as users run it beside a bare FastAPI
hello app, and measure both with wrk. Traffic goes to 127.0.0.1 only; every run is bounded."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import stats

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))  # the tests' rendering and database helpers

import conftest  # noqa: E402

SERVER_CORE = "0"
WRK_CORE = "1"
ADMIN_EMAIL = "admin@bench.example.com"
USER_EMAIL = "user@bench.example.com"
PASSWORD = "bench-" + secrets.token_urlsafe(12)  # fresh per run; the accounts are throwaway
API = "/api/v1"
HIGH_LIMIT = "1000000/minute"  # rate limits stay on (their cost is measured), never refuse


class BenchError(Exception):
    """A step failed; the message says which and how to fix it."""


@dataclass
class Options:
    variant: str
    ref: str
    rounds: int
    seconds: int
    connections: int
    storm_seconds: int
    storm_connections: int
    startup_runs: int
    render_runs: int
    users: int
    invalidations: int
    httptools: bool
    profile: bool
    json_path: Path | None
    keep: Path | None
    skip: frozenset[str] = field(default_factory=frozenset)
    settings: dict[str, str] = field(default_factory=dict)
    baseline: str | None = None


@dataclass(frozen=True)
class Instance:
    """A rendered, installed and seeded project, and the settings it is served with."""

    ref: str
    project: Path
    env: Mapping[str, str]


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark a rendered Rampart variant against a bare FastAPI app.",
    )
    parser.add_argument("--variant", default="compose-sqlite-memory", help="a tests' variant name")
    parser.add_argument(
        "--ref", default="HEAD", help="git ref of this repository to render (HEAD: the work tree)"
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="another git ref, served beside --ref: its /health/live and /users/me join the "
        "alternating rounds, so a change is measured against what came before in one run",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per target")
    parser.add_argument("--seconds", type=int, default=8, help="seconds of one wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--storm-seconds", type=int, default=6, help="length of the login storm")
    parser.add_argument("--storm-connections", type=int, default=16)
    parser.add_argument("--startup-runs", type=int, default=5)
    parser.add_argument("--render-runs", type=int, default=3)
    parser.add_argument("--users", type=int, default=60, help="extra users for the admin list")
    parser.add_argument(
        "--invalidations",
        type=int,
        default=100,
        help="role changes whose arrival at a second instance is timed (variants with a channel)",
    )
    parser.add_argument(
        "--httptools",
        action="store_true",
        help="also measure the hello app on httptools (Rampart keeps h11): the parser's cost",
    )
    parser.add_argument(
        "--profile", action="store_true", help="print cProfile's top functions of /health/live"
    )
    parser.add_argument("--json", type=Path, dest="json_path", help="also write the results here")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=("render", "startup", "inprocess", "http", "storm", "invalidation"),
        help="leave out a part (repeatable)",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra setting of the service, e.g. an AI variant's provider (repeatable)",
    )
    args = parser.parse_args(argv)
    if any("=" not in setting for setting in args.setting):
        parser.error("--setting takes NAME=VALUE")
    if args.variant not in conftest.SUPPORTED_VARIANTS:
        parser.error(f"unknown variant {args.variant!r}; one of the names in tests/conftest.py")
    if min(args.rounds, args.seconds, args.startup_runs, args.render_runs) < 1:
        parser.error("counts and durations must be at least 1")
    if args.seconds > 60 or args.storm_seconds > 60:
        parser.error("a wrk run is at most 60 s")
    return Options(
        variant=args.variant,
        ref=args.ref,
        rounds=args.rounds,
        seconds=args.seconds,
        connections=args.connections,
        storm_seconds=args.storm_seconds,
        storm_connections=args.storm_connections,
        startup_runs=args.startup_runs,
        render_runs=args.render_runs,
        users=args.users,
        invalidations=min(args.invalidations, 1000),
        httptools=args.httptools,
        profile=args.profile,
        json_path=args.json_path,
        keep=args.keep,
        skip=frozenset(args.skip),
        settings=dict(setting.split("=", 1) for setting in args.setting),
        baseline=args.baseline,
    )


def missing_tools() -> list[str]:
    hints = {
        "wrk": "wrk (Debian: apt-get install -y wrk)",
        "taskset": "taskset (Debian: apt-get install -y util-linux)",
        "uv": "uv (pip install uv)",
    }
    missing = [hint for tool, hint in hints.items() if shutil.which(tool) is None]
    if not {int(SERVER_CORE), int(WRK_CORE)} <= os.sched_getaffinity(0):
        missing.append(f"cores {SERVER_CORE} and {WRK_CORE} (the server and wrk get one each)")
    return missing


# ------------------------------------------------------------------------------ processes
def _run(
    command: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 600,
) -> str:
    args = [str(part) for part in command]
    result = subprocess.run(
        args,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(
            f"`{' '.join(args)}` exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"the server at {url} exited:\n{log.read_text(errors='replace')}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=2) as response,  # noqa: S310 - 127.0.0.1
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise BenchError(f"the server at {url} did not answer within 60 s")


@contextlib.contextmanager
def _server(
    command: Sequence[str | Path], *, cwd: Path, env: Mapping[str, str], probe: str, log: Path
) -> Iterator[int]:
    """A server pinned to the server core; yields its pid (taskset execs the command)."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *map(str, command)],
            cwd=cwd,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_up(probe, process, log)
            yield process.pid
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def _optional_server(
    wanted: bool, command: Sequence[str | Path], *, cwd: Path, env: Mapping[str, str],
    probe: str, log: Path,
) -> Iterator[int | None]:  # fmt: skip
    if not wanted:
        yield None
        return
    with _server(command, cwd=cwd, env=env, probe=probe, log=log) as pid:
        yield pid


def _memory(pid: int) -> dict[str, float]:
    return stats.parse_memory(Path(f"/proc/{pid}/status").read_text())


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk_command(
    url: str,
    *,
    seconds: int,
    connections: int,
    headers: Sequence[str] = (),
    script: Path = BENCH / "lua" / "report.lua",
) -> list[str]:
    command = ["taskset", "-c", WRK_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    command += ["--timeout", "5s", "-s", str(script)]
    for header in headers:
        command += ["-H", header]
    return [*command, url]


def _wrk(url: str, *, seconds: int, connections: int, headers: Sequence[str] = ()) -> stats.WrkRun:
    command = _wrk_command(url, seconds=seconds, connections=connections, headers=headers)
    return stats.parse_wrk(_run(command, timeout=seconds + 60))


def _status(method: str, url: str, token: str) -> int:
    request = urllib.request.Request(  # noqa: S310 - 127.0.0.1
        url, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


def _post_json(url: str, body: Mapping[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - 127.0.0.1
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        found: dict[str, Any] = json.load(response)
        return found


# ------------------------------------------------------------------------------ steps
def measure_render(runs: int, workdir: Path, ref: str) -> dict[str, float]:
    """`copier copy --defaults`, as a user runs it: from a clean clone (the work tree committed,
    as the tests' snapshot does) and with bytecode cached, after one warm-up render."""
    copier = Path(sys.executable).parent / "copier"
    env = {**os.environ, "COPIER_SETTINGS_PATH": str(workdir / "copier-settings.yml")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    (workdir / "copier-settings.yml").write_text("{}\n")
    template = REPO
    if ref == "HEAD":
        template = conftest.snapshot_template(workdir / "template-snapshot")
    times = []
    for index in range(runs + 1):
        destination = workdir / f"render-{index}"
        started = time.perf_counter()
        _run(
            [copier, "copy", "--quiet", "--defaults", "--vcs-ref", ref, template, destination],
            env=env,
        )
        if index:  # the first run is the warm-up
            times.append(time.perf_counter() - started)
        shutil.rmtree(destination)
    return {"render_s": stats.median(times), "render_min_s": min(times)}


def install(project: Path, env: Mapping[str, str]) -> None:
    """`uv sync` with bytecode compiled, as the Dockerfile installs (UV_COMPILE_BYTECODE)."""
    _run(["uv", "sync", "--compile-bytecode"], cwd=project, env=env)
    _run([project / ".venv/bin/python", "-m", "compileall", "-q", "src"], cwd=project, env=env)


def service_env(
    project_env: Mapping[str, str], answers: Mapping[str, Any], url: str
) -> dict[str, str]:
    """Production settings, access log on, rate limits raised out of the way."""
    env = dict(project_env)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        ENVIRONMENT="production",
        SECRET_KEY=secrets.token_urlsafe(48),
        DATABASE_URL=url,
        TRUSTED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="INFO",
        RATE_LIMIT_DEFAULT=HIGH_LIMIT,
        RATE_LIMIT_AUTH=HIGH_LIMIT,
        RATE_LIMIT_LOGIN_FAILURES=HIGH_LIMIT,
        RATE_LIMIT_LOGIN_FAILURES_PER_CLIENT=HIGH_LIMIT,
        RATE_LIMIT_LOGIN_FAILURES_PER_ACCOUNT=HIGH_LIMIT,
        # The admin logs in with a password only; MFA's TOTP step is not what is measured.
        MFA_REQUIRED_ROLES="[]",
    )
    if answers["rate_limit_backend"] == "redis":
        env["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    return env


def prepare(project: Path, env: Mapping[str, str], answers: Mapping[str, Any], users: int) -> None:
    cli = project / ".venv/bin" / answers["project_slug"]
    _run([cli, "migrate"], cwd=project, env=env)
    _run(
        [cli, "create-admin", "--email", ADMIN_EMAIL, "--password-stdin"],
        cwd=project,
        env=env,
        stdin=PASSWORD + "\n",
    )
    _run(
        [project / ".venv/bin/python", BENCH / "project_seed.py", answers["package_name"],
         USER_EMAIL, str(users)],
        cwd=project, env=env, stdin=PASSWORD + "\n",
    )  # fmt: skip


def measure_startup(
    project: Path, env: Mapping[str, str], package: str, runs: int
) -> dict[str, float]:
    imports, creates, walls = [], [], []
    python = project / ".venv/bin/python"
    for _ in range(runs):
        started = time.perf_counter()
        output = _run([python, BENCH / "project_startup.py", package], cwd=project, env=env)
        walls.append(time.perf_counter() - started)
        fields = dict(part.split("=") for part in output.split())
        imports.append(float(fields["import"]))
        creates.append(float(fields["create_app"]))
    return {
        "import_s": stats.median(imports),
        "create_app_s": stats.median(creates),
        "import_and_create_app_s": stats.median(
            i + c for i, c in zip(imports, creates, strict=True)
        ),
        "process_wall_s": stats.median(walls),
    }


def measure_inprocess(
    project: Path, env: Mapping[str, str], package: str, work: Path, profile: bool
) -> dict[str, Any]:
    """The middleware stack's CPU time per request, the ASGI app called without a server."""
    shutil.copy(BENCH / "hello_app.py", work / "hello_app.py")
    command: list[str | Path] = [
        project / ".venv/bin/python",
        BENCH / "project_inprocess.py",
        package,
        work,
    ]
    if profile:
        command.append("--profile")
    output = _run(command, cwd=project, env=env)
    first, _, rest = output.partition("\n")
    fields = {name: float(value) for name, value in (part.split("=") for part in first.split())}
    return {**fields, "ratio": fields["hello_us"] / fields["live_us"], "profile": rest.strip()}


def login_storm(
    base: str, pid: int, options: Options, project: Path, env: Mapping[str, str], package: str
) -> dict[str, Any]:
    """Concurrent logins for a few seconds while another wrk measures /health/live."""
    argon2 = _run([project / ".venv/bin/python", BENCH / "project_argon2.py", package],
                  cwd=project, env=env)  # fmt: skip
    fields = dict(part.split("=") for part in argon2.split())
    hash_s, cap = float(fields["hash"]), int(fields["cap"])
    storm_env = {
        **os.environ,
        "BENCH_LOGIN_EMAIL": USER_EMAIL,
        "BENCH_LOGIN_PASSWORD": PASSWORD,
        "BENCH_REPORT_LUA": str(BENCH / "lua" / "report.lua"),
    }
    storm = _wrk_command(
        f"{base}{API}/auth/login",
        seconds=options.storm_seconds,
        connections=options.storm_connections,
        script=BENCH / "lua" / "login.lua",
    )
    probe = _wrk_command(f"{base}/health/live", seconds=options.storm_seconds, connections=4)
    before = _memory(pid)
    with subprocess.Popen(storm, env=storm_env, stdout=subprocess.PIPE, text=True) as logins:
        live = stats.parse_wrk(_run(probe, timeout=options.storm_seconds + 60))
        out, _ = logins.communicate(timeout=options.storm_seconds + 60)
    storm_run = stats.parse_wrk(out)
    after = _memory(pid)
    return {
        "logins_per_s": storm_run.rps,
        "login_p99_ms": storm_run.p99_ms,
        "login_errors": storm_run.errors + storm_run.non_2xx,
        "argon2_hash_ms": hash_s * 1000,
        "logins_per_s_bound": 1 / hash_s,  # one core: hashes cannot overlap usefully
        "hash_concurrency_cap": cap,
        "live_p99_ms": live.p99_ms,
        "live_rps_during_storm": live.rps,
        "rss_before_mib": before["VmRSS"],
        "rss_after_mib": after["VmRSS"],
        "peak_rss_mib": after["VmHWM"],
    }


def measure_http(
    options: Options,
    project: Path,
    env: Mapping[str, str],
    answers: Mapping[str, Any],
    work: Path,
    baseline: Instance | None = None,
) -> dict[str, Any]:
    slug, package = answers["project_slug"], answers["package_name"]
    python = project / ".venv/bin/python"
    rampart_port, hello_port, httptools_port = _free_port(), _free_port(), _free_port()
    rampart = f"http://127.0.0.1:{rampart_port}"
    hello = f"http://127.0.0.1:{hello_port}"
    httptools = f"http://127.0.0.1:{httptools_port}"
    before_port = _free_port()
    before = f"http://127.0.0.1:{before_port}"
    before_project = baseline.project if baseline else project
    before_command = [before_project / ".venv/bin" / slug, "serve", "--port", str(before_port)]
    shutil.copy(BENCH / "hello_app.py", work / "hello_app.py")

    def hello_command(port: int, parser: str) -> list[str | Path]:
        """The same uvicorn settings as `serve` (server.py, cli.py), on the same interpreter."""
        command: list[str | Path] = [
            python, "-m", "uvicorn", "hello_app:app", "--app-dir", work,
            "--host", "127.0.0.1", "--port", str(port), "--http", parser,
            "--no-access-log", "--no-server-header", "--timeout-keep-alive", "5",
            "--limit-concurrency", "1000", "--log-level", "warning",
        ]  # fmt: skip
        if parser == "h11":
            command += ["--h11-max-incomplete-event-size", "65536"]
        return command

    results: dict[str, Any] = {}
    with (
        _server(
            [project / ".venv/bin" / slug, "serve", "--port", str(rampart_port)],
            cwd=project, env=env, probe=f"{rampart}/health/live", log=work / "rampart.log",
        ) as rampart_pid,
        _server(
            hello_command(hello_port, "h11"), cwd=work, env=env, probe=f"{hello}/hello",
            log=work / "hello.log",
        ) as hello_pid,
        _optional_server(
            options.httptools, hello_command(httptools_port, "httptools"), cwd=work, env=env,
            probe=f"{httptools}/hello", log=work / "hello-httptools.log",
        ) as httptools_pid,
        _optional_server(
            baseline is not None, before_command, cwd=before_project,
            env=baseline.env if baseline else env, probe=f"{before}/health/live",
            log=work / "baseline.log",
        ) as before_pid,
    ):  # fmt: skip
        results["idle_rss_mib"] = {
            "hello": _memory(hello_pid)["VmRSS"],
            "rampart": _memory(rampart_pid)["VmRSS"],
        }
        credentials = {"password": PASSWORD}

        def bearer(base: str, email: str) -> list[str]:
            token = _post_json(f"{base}{API}/auth/login", {**credentials, "email": email})
            return [f"Authorization: Bearer {token['access_token']}"]

        # This build and, with --baseline, the older one: each target's rows side by side.
        servers = [("", rampart_pid, rampart)]
        if baseline is not None and before_pid is not None:
            servers.append((f" @ {baseline.ref}", before_pid, before))
        targets: list[tuple[str, int, str, list[str]]] = [
            ("hello (h11)", hello_pid, f"{hello}/hello", []),
            *(
                (f"/health/live{label}", pid, f"{base}/health/live", [])
                for label, pid, base in servers
            ),
            *(
                (f"GET /users/me{label}", pid, f"{base}{API}/users/me", bearer(base, USER_EMAIL))
                for label, pid, base in servers
            ),
            (
                "GET /users?limit=50 (admin)",
                rampart_pid,
                f"{rampart}{API}/users?limit=50",
                bearer(rampart, ADMIN_EMAIL),
            ),
        ]
        if httptools_pid is not None:
            targets.insert(1, ("hello (httptools)", httptools_pid, f"{httptools}/hello", []))
        runs: dict[str, list[stats.WrkRun]] = {name: [] for name, *_ in targets}
        cpu: dict[str, list[float]] = {name: [] for name, *_ in targets}
        rss: dict[str, float] = {}
        # Warm-up, then alternate the targets round by round so drifting load hits them alike.
        for _, _, url, headers in targets:
            _wrk(url, seconds=1, connections=options.connections, headers=headers)
        for _ in range(options.rounds):
            for name, pid, url, headers in targets:
                started = _cpu_seconds(pid)
                run = _wrk(
                    url, seconds=options.seconds, connections=options.connections, headers=headers
                )
                cpu[name].append(stats.cpu_per_request_us(_cpu_seconds(pid) - started, run))
                runs[name].append(run)
                rss[name] = _memory(pid)["VmRSS"]
        summaries = [
            stats.summarize(name, runs[name], rss[name], cpu[name]) for name, *_ in targets
        ]
        results["summaries"] = summaries
        results["baseline"] = targets[0][0]
        if "storm" not in options.skip:
            results["login_storm"] = login_storm(
                rampart, rampart_pid, options, project, env, package
            )
    return results


def measure_invalidation(
    options: Options, project: Path, env: Mapping[str, str], answers: Mapping[str, Any], work: Path
) -> dict[str, Any]:
    """Two instances of the service on one invalidation channel: an admin grants and takes a
    role on the first, and the user asks the second (whose principal cache holds them) until
    the change shows. Timed from the moment the first instance answered the change; the
    stale answers counted are those the second gave after that moment."""
    slug = answers["project_slug"]
    env = {**env, "PRINCIPAL_CACHE_CHANNEL": f"bench-{secrets.token_hex(8)}:principals"}
    first, second = (f"http://127.0.0.1:{_free_port()}" for _ in range(2))
    with (
        _server([project / ".venv/bin" / slug, "serve", "--port", first.rsplit(":", 1)[1]],
                cwd=project, env=env, probe=f"{first}/health/ready", log=work / "first.log"),
        _server([project / ".venv/bin" / slug, "serve", "--port", second.rsplit(":", 1)[1]],
                cwd=project, env=env, probe=f"{second}/health/ready", log=work / "second.log"),
    ):  # fmt: skip
        credentials = {"password": PASSWORD}
        admin = _post_json(f"{first}{API}/auth/login", {**credentials, "email": ADMIN_EMAIL})
        user = _post_json(f"{first}{API}/auth/login", {**credentials, "email": USER_EMAIL})
        me = urllib.request.Request(  # noqa: S310 - 127.0.0.1
            f"{second}{API}/users/me", headers={"Authorization": f"Bearer {user['access_token']}"}
        )
        with urllib.request.urlopen(me, timeout=10) as response:  # noqa: S310
            user_id = json.load(response)["id"]
        role = f"{first}{API}/users/{user_id}/roles/admin"
        probe = f"{second}{API}/users?limit=1"
        delays, stale = [], 0
        for index in range(options.invalidations):
            grant = index % 2 == 0
            before, after = (403, 200) if grant else (200, 403)
            for _ in range(2):  # the second answer comes from the cache
                if _status("GET", probe, user["access_token"]) != before:
                    raise BenchError("the second instance did not answer as expected")
            if _status("PUT" if grant else "DELETE", role, admin["access_token"]) != 204:
                raise BenchError("the role change failed")
            changed = time.perf_counter()
            deadline = changed + 5
            while _status("GET", probe, user["access_token"]) != after:
                stale += 1
                if time.perf_counter() > deadline:
                    raise BenchError("the change did not reach the second instance in 5 s")
            delays.append((time.perf_counter() - changed) * 1000)
    ordered = sorted(delays)
    return {
        "changes": len(delays),
        "stale_answers": stale,
        "seen_after_p50_ms": stats.median(delays),
        "seen_after_p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "seen_after_max_ms": ordered[-1],
    }


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def project_versions(project: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, platform;"
        "print(platform.python_version(), *(m.version(p) for p in "
        "('fastapi', 'starlette', 'uvicorn', 'pydantic', 'structlog')))"
    )
    values = _run([project / ".venv/bin/python", "-c", code]).split()
    names = ("python", "fastapi", "starlette", "uvicorn", "pydantic", "structlog")
    return dict(zip(names, values, strict=True))


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    missing = missing_tools()
    if missing:
        print("the benchmark needs: " + "; ".join(missing), file=sys.stderr)
        return 2
    answers = conftest.variant_answers(options.variant)
    os.environ.update(conftest.GIT_IDENTITY)  # copier commits a dirty work tree
    with contextlib.ExitStack() as stack:
        if options.keep is not None:
            options.keep.mkdir(parents=True, exist_ok=True)
            work = options.keep.resolve()
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rampart-bench-")))
        report: dict[str, Any] = {
            "variant": options.variant,
            "ref": options.ref,
            "baseline_ref": options.baseline,
            "machine": machine(),
        }
        try:
            report.update(_measure(options, answers, work, stack))
        except BenchError as error:
            print(f"benchmark failed: {error}", file=sys.stderr)
            return 1
    print(render_report(report))
    if options.json_path is not None:
        options.json_path.write_text(json.dumps(to_json(report), indent=2) + "\n")
    return 0


def _measure(
    options: Options, answers: Mapping[str, Any], work: Path, stack: contextlib.ExitStack
) -> dict[str, Any]:
    report: dict[str, Any] = {}
    if "render" not in options.skip:
        print("rendering with copier --defaults ...", file=sys.stderr)
        report["render"] = measure_render(options.render_runs, work, options.ref)
    if {"startup", "inprocess", "http"} <= options.skip:
        return report
    print(f"rendering and installing {options.variant} ...", file=sys.stderr)
    project, env = install_variant(
        options, answers, options.ref, work / "project", work / "db", stack
    )
    report["versions"] = project_versions(project)
    if "startup" not in options.skip:
        print("measuring startup ...", file=sys.stderr)
        report["startup"] = measure_startup(
            project, env, answers["package_name"], options.startup_runs
        )
    if "inprocess" not in options.skip:
        print("measuring the stack in process ...", file=sys.stderr)
        report["inprocess"] = measure_inprocess(
            project, env, answers["package_name"], work, options.profile
        )
    if "http" not in options.skip:
        print("migrating and seeding ...", file=sys.stderr)
        prepare(project, env, answers, options.users)
        baseline = None
        if options.baseline is not None:
            baseline = install_baseline(options, options.baseline, answers, work, stack)
        print("measuring HTTP (this takes a while) ...", file=sys.stderr)
        report["http"] = measure_http(options, project, env, answers, work, baseline)
    channel = answers["rate_limit_backend"] == "redis" or answers["database"] == "postgresql"
    if channel and "invalidation" not in options.skip:
        if "http" in options.skip:
            prepare(project, env, answers, options.users)
        print("timing invalidations across two instances ...", file=sys.stderr)
        report["invalidation"] = measure_invalidation(options, project, env, answers, work)
    return report


def install_baseline(
    options: Options, ref: str, answers: Mapping[str, Any], work: Path, stack: contextlib.ExitStack
) -> Instance:
    """The same variant at another ref, installed and seeded like the measured one, with a
    database and an invalidation channel of its own. The ref is resolved to its commit first:
    copier renders the work tree for `HEAD`, and `--baseline HEAD` means the last commit."""
    commit = _run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=REPO).strip()
    print(
        f"rendering and installing {options.variant} at {ref} ({commit[:12]}) ...", file=sys.stderr
    )
    project, env = install_variant(
        options, answers, commit, work / "baseline", work / "baseline-db", stack
    )
    env["PRINCIPAL_CACHE_CHANNEL"] = f"bench-baseline-{secrets.token_hex(8)}:principals"
    prepare(project, env, answers, options.users)
    return Instance(ref=ref, project=project, env=env)


def install_variant(
    options: Options,
    answers: Mapping[str, Any],
    ref: str,
    destination: Path,
    databases: Path,
    stack: contextlib.ExitStack,
) -> tuple[Path, dict[str, str]]:
    """The variant rendered at `ref` and installed as a deployed image has it, with a fresh
    database (not yet migrated) and the settings it is served with."""
    project = conftest.render(
        destination, conftest.SUPPORTED_VARIANTS[options.variant], vcs_ref=ref
    )
    base_env = conftest.project_env()
    base_env.pop("PYTHONDONTWRITEBYTECODE", None)  # a deployed image has its bytecode cached
    install(project, base_env)
    url = stack.enter_context(conftest.fresh_database(answers["database"], databases))
    return project, {**service_env(base_env, answers, url), **options.settings}


def render_report(report: Mapping[str, Any]) -> str:
    title = f"# Rampart benchmark: {report['variant']} at {report['ref']}"
    if report.get("baseline_ref"):
        title += f", beside {report['baseline_ref']}"
    parts = [title, ""]
    parts.append(stats.key_values("machine", report["machine"]))
    if "versions" in report:
        parts.append(stats.key_values("versions", report["versions"]))
    http = report.get("http")
    if http:
        parts += ["", stats.table(http["summaries"], http["baseline"]), ""]
        parts.append(stats.key_values("idle RSS MiB", http["idle_rss_mib"]))
        if "login_storm" in http:
            parts.append(stats.key_values("login storm", http["login_storm"]))
    if "inprocess" in report:
        inprocess = {k: v for k, v in report["inprocess"].items() if k != "profile"}
        parts.append(stats.key_values("in process, CPU us per request (best round)", inprocess))
        if report["inprocess"]["profile"]:
            parts.append(report["inprocess"]["profile"])
    if "invalidation" in report:
        parts.append(
            stats.key_values("a role change, seen by a second instance", report["invalidation"])
        )
    if "startup" in report:
        parts.append(stats.key_values("startup (fresh process, medians)", report["startup"]))
    if "render" in report:
        parts.append(stats.key_values("render (copier copy --defaults)", report["render"]))
    return "\n".join(parts)


def to_json(report: Mapping[str, Any]) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, stats.Summary):
            return value.as_dict()
        if isinstance(value, Mapping):
            return {key: convert(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [convert(item) for item in value]
        return value

    converted: dict[str, Any] = convert(report)
    return converted
