"""Slow tier: the interactive docs really render in a browser, offline, under the app's CSP.

A headless Chromium loads `/docs` from a served project (production, docs explicitly enabled)
with no network beyond 127.0.0.1: every script and stylesheet must come from the service, run
under its Content-Security-Policy, and render the operations of the OpenAPI document.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ProjectCache, assert_ok, fresh_database, run, variant_answers
from servers import Server, cli, service_env, start_server, stop, wait_until_ready

VARIANT = "compose-sqlite-memory"
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(VARIANT)]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=10000",
)


@pytest.fixture(scope="module")
def docs_server(
    project_cache: ProjectCache, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    project = project_cache.installed(VARIANT)
    answers = variant_answers(VARIANT)
    with fresh_database(answers["database"], tmp_path_factory.mktemp("db")) as url:
        env = service_env(answers, url, DOCS_ENABLED="true")
        assert_ok(run(cli(answers, "migrate"), cwd=project, env=env))
        server = start_server(project, answers, env)
        try:
            wait_until_ready(server)
            yield server
        finally:
            stop(server)


def test_docs_render_offline_under_the_csp(docs_server: Server, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is required (.ci/run installs Debian's chromium package)"
    result = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         f"{docs_server.base_url}/docs"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    dom, log = result.stdout, result.stderr
    assert "Unable to render this definition" not in dom, "the UI cannot read this OpenAPI version"
    assert 'data-path="/api/v1/auth/login"' in dom, dom[-3000:] + log[-3000:]
    assert 'data-path="/api/v1/users/{user_id}/roles/{role_name}"' in dom
    assert "Content Security Policy" not in log, log[-3000:]
