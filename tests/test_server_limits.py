"""Slow tier: the `serve` command bounds request heads and the time to send them.

A real server process of the default variant is attacked over 127.0.0.1 with oversized
headers (one huge header, then a flood of small ones) and with a request head that never
completes. The worker's resident memory is read from /proc before and after: it stays flat,
other requests keep being answered, and the stalled connection is closed by the server.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import ProjectCache, assert_ok, fresh_database, run, variant_answers
from servers import Server, cli, service_env, start_server, stop, wait_until_ready

VARIANT = "compose-sqlite-memory"
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(VARIANT)]

BOMB_BYTES = 150 * 1024 * 1024  # the size that took a worker from 130 to 578 MiB
CHUNK = 1024 * 1024
MAX_GROWTH_MIB = 40  # the whole attack, both connections, against a 64 KiB head limit
HEAD_TIMEOUT_SECONDS = 1


def _worker_pid(server: Server) -> int:
    """The process serving: the one child of `uv run` (or the process itself)."""
    root = server.process.pid
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(root):
            return int(status.parent.name)
    return root


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _send_head(port: int, header_lines: Iterator[bytes]) -> bytes:
    """Send a request head line by line until the server stops reading; return its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sent = 0
        try:
            for line in header_lines:
                sock.sendall(line)
                sent += len(line)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection: what a bounded server does
        try:
            return sock.recv(4096)
        except ConnectionResetError:
            return b""


def _one_huge_header() -> Iterator[bytes]:
    yield b"X-Bomb: "
    for _ in range(BOMB_BYTES // CHUNK):
        yield b"a" * CHUNK


def _many_small_headers() -> Iterator[bytes]:
    line = b"X-H: 1\r\n"
    batch = line * (CHUNK // len(line))
    for _ in range(BOMB_BYTES // len(batch)):
        yield batch


@pytest.fixture(scope="module")
def server(
    project_cache: ProjectCache, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    project = project_cache.installed(VARIANT)
    answers = variant_answers(VARIANT)
    with fresh_database(answers["database"], tmp_path_factory.mktemp("db")) as url:
        env = service_env(answers, url, SERVER_HEAD_TIMEOUT_SECONDS=str(HEAD_TIMEOUT_SECONDS))
        assert_ok(run(cli(answers, "migrate"), cwd=project, env=env))
        running = start_server(project, answers, env)
        try:
            wait_until_ready(running)
            yield running
        finally:
            stop(running)


def test_header_bombs_are_refused_with_flat_memory(server: Server) -> None:
    port = server.port
    pid = _worker_pid(server)
    for _ in range(20):  # warm the allocator with ordinary traffic first
        assert httpx.get(f"{server.base_url}/health/live").status_code == 200
    before = _rss_mib(pid)

    answers: list[bytes] = []
    attackers = [
        threading.Thread(target=lambda: answers.append(_send_head(port, _one_huge_header()))),
        threading.Thread(target=lambda: answers.append(_send_head(port, _many_small_headers()))),
    ]
    for attacker in attackers:
        attacker.start()
    # Other clients are served while the attack runs.
    assert httpx.get(f"{server.base_url}/health/live", timeout=10).status_code == 200
    for attacker in attackers:
        attacker.join(timeout=120)
        assert not attacker.is_alive()
    after = _rss_mib(pid)

    for answer in answers:  # refused before the head was complete: 400, or just closed
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    print(f"worker {pid} RSS {before:.1f} MiB before, {after:.1f} MiB after two header bombs")
    assert pid != server.process.pid, "measured uv, not the worker"
    assert after - before < MAX_GROWTH_MIB
    assert server.process.poll() is None
    assert httpx.get(f"{server.base_url}/health/live").status_code == 200


def test_a_request_head_that_never_completes_is_cut_off(server: Server) -> None:
    port = server.port
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        # The server closes the connection after its head timeout; recv returns b"" then.
        # The socket timeout only stops a broken build from hanging.
        assert sock.recv(4096) == b""
    assert httpx.get(f"{server.base_url}/health/live").status_code == 200


def test_a_body_longer_than_its_content_length_is_not_read_past_it(server: Server) -> None:
    """The body-size cap trusts HTTP/1 framing for requests that declare a length: the server
    hands the app exactly `Content-Length` bytes, and what follows is never more body."""
    port = server.port
    body = b'{"email": "a@example.com", "password": "not-the-password"}'
    declared = body.index(b'"password"')  # cut inside the object: no JSON on its own
    head = (
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % declared
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body)
        answer = b""
        # The rest is the head of a next request that never completes: the server closes
        # the connection after its head timeout, and recv returns b"".
        while chunk := sock.recv(65536):
            answer += chunk
    statuses = [line[9:12] for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]
    # The app parsed the declared bytes alone (the whole body would have been a 401).
    assert statuses == [b"400"], answer[:500]
    assert b'"malformed_json"' in answer, answer[:500]
    assert httpx.get(f"{server.base_url}/health/live").status_code == 200
