"""Images of rendered projects, built and run with podman on base images made on this machine.

There is no Docker engine and no container registry here, but Debian's podman (buildah inside)
and runc build the rendered Dockerfile unchanged: only its base-image build argument points at a
local image. That image is made here: a minbase Debian rootfs from debootstrap (this machine's apt
mirror), imported, then a Python layer that trusts the host's CA bundle (package downloads inside
a build go through the same TLS-inspecting egress as the host's).

Everything lives in a podman store of its own under the cache directory (RAMPART_CONTAINERS_CACHE,
else ~/.cache/rampart-containers), and each base image is tagged with a hash of its recipe: later
runs, CI's included, reuse the base images and the service builds reuse their cached layers.
Building needs root (debootstrap, rootful podman), which every development and CI machine has.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import assert_ok, describe, run

RECIPE_VERSION = 1  # bump to rebuild every base image
# bookworm's python3 is 3.11, the interpreter path the Dockerfile names (/usr/local/bin/python3.11).
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = ("ca-certificates", "python3", "python3-pip")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_REPOSITORY = "localhost/rampart-base"
PYTHON_BUILD_ARG = "PYTHON_IMAGE"

# The official python image's layout on Debian's interpreter: /usr/local/bin/python3.11 and
# `python`, and a pip that may install system-wide (the builder stage installs uv with it).
PYTHON_CONTAINERFILE = """\
FROM {debian}
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN ln -s /usr/bin/python3.11 /usr/local/bin/python3.11 \\
    && ln -s python3.11 /usr/local/bin/python3 \\
    && ln -s python3 /usr/local/bin/python \\
    && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED
ENV LANG=C.UTF-8 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
"""

# runc, not crun (which fails here), and explicit limits: podman's default rlimits (a million
# open files, the host's process limit) are more than a container may raise to on this machine.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
tmp_dir = "{run}/libpod"
"""
STORAGE_CONF = """\
[storage]
driver = "overlay"
graphroot = "{cache}/storage"
runroot = "{run}/storage"
"""

BUILD_TIMEOUT = 900
BOOTSTRAP_TIMEOUT = 900
REQUIRED_TOOLS = ("podman", "runc", "slirp4netns", "debootstrap")
# From inside a container on slirp4netns, the host's loopback (PostgreSQL, Redis) is 10.0.2.2.
HOST_FROM_CONTAINER = "10.0.2.2"
HOST_LOOPBACK_NETWORK = "slirp4netns:allow_host_loopback=true"


def cache_directory() -> Path:
    if configured := os.environ.get("RAMPART_CONTAINERS_CACHE"):
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rampart-containers"


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Podman:
    """podman on the store and configuration of the cache directory."""

    cache: Path
    env: Mapping[str, str]

    @classmethod
    def configure(cls, cache: Path) -> Podman:
        missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
        assert not missing, f"{', '.join(missing)} missing: .ci/run installs Debian's packages"
        assert os.geteuid() == 0, "building images needs root (debootstrap, rootful podman)"
        cache.mkdir(parents=True, exist_ok=True)
        runtime = Path("/run/rampart-containers") / _digest(str(cache.resolve()))
        (cache / "containers.conf").write_text(CONTAINERS_CONF.format(run=runtime))
        (cache / "storage.conf").write_text(STORAGE_CONF.format(cache=cache.resolve(), run=runtime))
        env = {
            **os.environ,
            "CONTAINERS_CONF": str(cache / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(cache / "storage.conf"),
        }
        return cls(cache, env)

    def attempt(
        self, *args: str, timeout: float = 300, input: str | None = None
    ) -> tuple[int, str, str]:
        """Run podman; return its exit code, standard output and standard error."""
        result = run(["podman", *args], env=self.env, timeout=timeout, input=input)
        return result.returncode, result.stdout, result.stderr

    def __call__(self, *args: str, timeout: float = 300, input: str | None = None) -> str:
        """Run podman and return its standard output; a failure fails the test."""
        result = run(["podman", *args], env=self.env, timeout=timeout, input=input)
        assert_ok(result)
        return result.stdout

    def has_image(self, reference: str) -> bool:
        return self.attempt("image", "exists", reference)[0] == 0

    def inspect(self, *references: str) -> list[dict[str, object]]:
        found: list[dict[str, object]] = json.loads(self("inspect", *references))
        return found

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One creator of base images at a time (parallel sessions on the same machine)."""
        with (self.cache / "lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------- base images
def apt_mirror() -> str:
    """The Debian archive this machine's apt uses (not its security archive)."""
    sources = Path("/etc/apt")
    for path in sorted((sources / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            lines = [line for line in stanza.splitlines() if re.match(r"^[A-Za-z-]+:", line)]
            fields = dict(line.split(":", 1) for line in lines)
            security = any("security" in suite for suite in fields.get("Suites", "").split())
            if "deb" in fields.get("Types", "").split() and not security:
                return fields["URIs"].split()[0]
    for path in [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*.list"))]:
        for line in path.read_text().splitlines() if path.is_file() else []:
            words = [word for word in line.split() if not word.startswith("[")]
            if words[:1] == ["deb"] and "security" not in words[2]:
                return words[1]
    pytest.fail("no Debian archive in this machine's apt sources")


@dataclass(frozen=True)
class BaseImages:
    python: str


def base_images(podman: Podman) -> BaseImages:
    """The local Python image the Dockerfile builds on, made once per recipe and kept."""
    mirror = apt_mirror()
    debian = f"{IMAGE_REPOSITORY}/debian:{DEBIAN_SUITE}-" + _digest(
        RECIPE_VERSION, DEBIAN_SUITE, mirror, DEBIAN_PACKAGES
    )
    containerfile = PYTHON_CONTAINERFILE.format(debian=debian)
    ca_bundle = HOST_CA_BUNDLE.read_bytes()
    python = f"{IMAGE_REPOSITORY}/python:3.11-" + _digest(
        debian, containerfile, hashlib.sha256(ca_bundle).hexdigest()
    )
    with podman.lock():
        if not podman.has_image(debian):
            _debootstrap(podman, mirror, debian)
        if not podman.has_image(python):
            with tempfile.TemporaryDirectory(dir=podman.cache) as context:
                (Path(context) / "Containerfile").write_text(containerfile)
                (Path(context) / "ca-certificates.crt").write_bytes(ca_bundle)
                podman("build", "--pull=never", "--format", "docker", "-t", python, context)
        _forget_other_recipes(podman, keep={debian, python})
    return BaseImages(python=python)


def _debootstrap(podman: Podman, mirror: str, tag: str) -> None:
    with tempfile.TemporaryDirectory(dir=podman.cache) as work:
        rootfs = Path(work) / "rootfs"
        bootstrapped = run(
            [
                "debootstrap", "--variant=minbase", f"--include={','.join(DEBIAN_PACKAGES)}",
                DEBIAN_SUITE, rootfs, mirror,
            ],
            timeout=BOOTSTRAP_TIMEOUT,
        )  # fmt: skip
        assert bootstrapped.returncode == 0, describe(bootstrapped)
        # Downloaded packages and index files are of no use inside an image.
        for leftovers in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / leftovers).glob("*"):
                if path.is_file():
                    path.unlink()
        archive = Path(work) / "rootfs.tar"
        assert_ok(run(["tar", "-C", rootfs, "--numeric-owner", "-cf", archive, "."]))
        podman("import", "--change", 'CMD ["bash"]', str(archive), tag, timeout=BOOTSTRAP_TIMEOUT)


def _forget_other_recipes(podman: Podman, keep: set[str]) -> None:
    """Drop base images of older recipes, and untagged layers older than a week: the builder
    stage's layers are untagged too, and the next build reuses the recent ones."""
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPOSITORY + "/*")
    stale = [name for name in listed.split() if name not in keep]
    if stale:
        podman("rmi", "--force", *stale)
    podman("image", "prune", "--force", "--filter", "until=168h")


# --------------------------------------------------------------------------- service images
def declared_build_args(dockerfile: Path) -> set[str]:
    return set(re.findall(r"^ARG\s+([A-Za-z_][A-Za-z0-9_]*)", dockerfile.read_text(), re.M))


def build(podman: Podman, project: Path, tag: str, base: BaseImages) -> None:
    """`podman build` of the project's own Dockerfile, base images taken from this machine.

    `--pull=never`: nothing comes from a registry (the digest-pinned default stage is unused
    and skipped). `--format docker`: the OCI format has no HEALTHCHECK, and podman would drop it.
    """
    declared = declared_build_args(project / "Dockerfile")
    assert PYTHON_BUILD_ARG in declared, (
        f"the Dockerfile must take its Python base image from the {PYTHON_BUILD_ARG} build arg"
    )
    podman(
        "build", "--pull=never", "--format", "docker", "--layers",
        "--build-arg", f"{PYTHON_BUILD_ARG}={base.python}",
        "-t", tag, str(project),
        timeout=BUILD_TIMEOUT,
    )  # fmt: skip


def image_size(podman: Podman, tag: str) -> int:
    size = podman.inspect(tag)[0]["Size"]
    assert isinstance(size, int)
    return size


# ------------------------------------------------------------------------------- containers
@dataclass
class Container:
    podman: Podman
    name: str

    def state(self) -> dict[str, object]:
        state = self.podman.inspect(self.name)[0]["State"]
        assert isinstance(state, dict)
        return state

    def logs(self) -> str:
        code, out, err = self.podman.attempt("logs", self.name)
        return (out + err)[-6000:] if code == 0 else f"(no logs: {err.strip()})"

    def exec(self, *command: str) -> tuple[int, str, str]:
        return self.podman.attempt("exec", self.name, *command)

    def remove(self) -> None:
        self.podman.attempt("rm", "--force", "--time", "0", self.name)


def hardening_flags(
    env_file: Path, memory: str, volumes: Sequence[str] = (), network: str = HOST_LOOPBACK_NETWORK
) -> list[str]:
    """The run options of the Compose file's services: read-only root with a tmpfs /tmp, the
    image's non-root uid, no capabilities, no privilege gain, bounded pids and memory."""
    flags = [
        "--read-only", "--tmpfs", "/tmp:size=64m,mode=1777",  # noqa: S108 - inside the container
        "--user", "10001:10001", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--pids-limit", "256",
        "--memory", memory, "--memory-swap", memory,
        "--network", network, "--env-file", str(env_file),
        # No timer can run health checks here (no systemd); the test runs them itself.
        "--health-interval", "disable",
    ]  # fmt: skip
    for volume in volumes:
        flags += ["--volume", volume]
    return flags


def start(podman: Podman, name: str, image: str, flags: Sequence[str], *command: str) -> Container:
    podman("run", "--detach", "--name", name, *flags, image, *command)
    return Container(podman, name)


def wait_until_ready(container: Container, base_url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        state = container.state()
        if not state.get("Running"):
            pytest.fail(f"container exited with {state.get('ExitCode')}:\n{container.logs()}")
        try:
            response = httpx.get(f"{base_url}/health/ready", timeout=2)
        except httpx.TransportError as error:
            last = repr(error)
        else:
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text}"
        time.sleep(0.2)  # polling interval, not a wait for timing
    pytest.fail(f"/health/ready not 200 within {timeout} s ({last}):\n{container.logs()}")
