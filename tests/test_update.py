"""`copier update` brings a generated project to a newer template release without losing local
work, reports conflicts instead of resolving them silently, and switches an answer cleanly.

The releases are made in a throwaway copy of this repository: `0.1.0` is the work tree under
test, `0.2.0` adds a section to the generated README and a new file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import copier
import pytest
import yaml

from conftest import INSTALL_TIMEOUT, assert_ok, fresh_database, git, project_env, render, run

OLD, NEW = "0.1.0", "0.2.0"

README_ADDITION = (
    "\n## Staying current\n\nRun `copier update` to pull newer Rampart releases into "
    "{{ project_name }}.\n"
)
NEW_FILE = "UPGRADE-CHECK.md"
NEW_FILE_TEMPLATE = "# Upgrade check for {{ project_slug }}\n"
CONFLICT_MARKERS = ("<<<<<<< before updating", ">>>>>>> after updating")


# ------------------------------------------------------------------------------ helpers
def files(tree: Path) -> dict[str, bytes]:
    return {
        path.relative_to(tree).as_posix(): path.read_bytes()
        for path in sorted(tree.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(tree).parts
    }


def generate(template: Path, destination: Path, data: Mapping[str, Any] | None = None) -> Path:
    """Render a release into a git repository with one commit, as a user's project starts."""
    render(destination, data, template=template, vcs_ref=OLD)
    commit_all(destination, "Generated with Rampart", init=True)
    return destination


def commit_all(project: Path, message: str, *, init: bool = False) -> None:
    if init:
        git("init", "--quiet", "--initial-branch=main", cwd=project)
    git("add", "--all", cwd=project)
    git("commit", "--quiet", "--no-verify", "-m", message, cwd=project)


def update(
    project: Path,
    data: Mapping[str, Any] | None = None,
    vcs_ref: str = NEW,
) -> None:
    copier.run_update(
        str(project),
        data=dict(data or {}),
        defaults=True,
        overwrite=True,
        unsafe=False,
        quiet=True,
        vcs_ref=vcs_ref,
    )


def answers_of(project: Path) -> dict[str, Any]:
    recorded: dict[str, Any] = yaml.safe_load((project / ".copier-answers.yml").read_text())
    return recorded


def unmerged(project: Path) -> list[str]:
    return git("diff", "--name-only", "--diff-filter=U", cwd=project).split()


def leftovers_of_a_merge(project: Path) -> list[str]:
    found = [name for name in files(project) if name.endswith((".rej", ".orig"))]
    for name, content in files(project).items():
        text = content.decode(errors="replace")
        if any(marker in text for marker in CONFLICT_MARKERS):
            found.append(name)
    return found


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def releases(template_snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A template repository with release tags OLD (the work tree) and NEW (OLD plus a change)."""
    repo = tmp_path_factory.mktemp("releases") / "rampart"
    git("clone", "--quiet", "--no-tags", template_snapshot, repo, cwd=repo.parent)
    git("tag", OLD, cwd=repo)
    readme = repo / "template" / "README.md.jinja"
    readme.write_text(readme.read_text(encoding="utf-8") + README_ADDITION, encoding="utf-8")
    (repo / "template" / f"{NEW_FILE}.jinja").write_text(NEW_FILE_TEMPLATE, encoding="utf-8")
    commit_all(repo, "Release 0.2.0: upgrade notes")
    git("tag", NEW, cwd=repo)
    return repo


# -------------------------------------------------------------------------------- tests
def test_update_to_a_newer_release_keeps_local_edits(releases: Path, tmp_path: Path) -> None:
    project = generate(releases, tmp_path / "project")
    readme = project / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) >= 3, "the generated README needs a title and a body for this test"
    local_line = "Owned by the payments team; ask in #payments.\n"
    readme.write_text("".join([lines[0], local_line, *lines[1:]]), encoding="utf-8")
    (project / "notes").mkdir()
    (project / "notes" / "local.md").write_text("Our own notes.\n", encoding="utf-8")
    commit_all(project, "Local work")

    update(project)

    text = readme.read_text(encoding="utf-8")
    assert local_line in text, "the local edit was lost"
    assert "pull newer Rampart releases into My Service." in text, "the template change is missing"
    assert text.index(local_line) < text.index("## Staying current")
    assert (project / NEW_FILE).read_text(encoding="utf-8") == "# Upgrade check for my-service\n"
    assert (project / "notes" / "local.md").read_text(encoding="utf-8") == "Our own notes.\n"
    assert answers_of(project)["_commit"] == NEW
    assert not leftovers_of_a_merge(project)
    assert not unmerged(project)


def test_conflicting_local_edit_is_reported_not_lost(releases: Path, tmp_path: Path) -> None:
    project = generate(releases, tmp_path / "project")
    readme = project / "README.md"
    local_section = (
        "\n## Staying current\n\nWe pin Rampart; upgrades go through the platform team.\n"
    )
    readme.write_text(readme.read_text(encoding="utf-8") + local_section, encoding="utf-8")
    commit_all(project, "Local upgrade policy")

    update(project)

    text = readme.read_text(encoding="utf-8")
    assert all(marker in text for marker in CONFLICT_MARKERS), text
    assert "We pin Rampart; upgrades go through the platform team." in text, "local text lost"
    assert "pull newer Rampart releases into My Service." in text, "template text lost"
    assert unmerged(project) == ["README.md"], "git does not list the conflict as unmerged"
    # The rest of the release still arrived.
    assert (project / NEW_FILE).is_file()
    assert answers_of(project)["_commit"] == NEW


def switch(
    releases: Path, tmp_path: Path, answers: dict[str, Any], *, project: Path | None = None
) -> tuple[Path, dict[str, bytes]]:
    """Update a project (a fresh one by default) to `answers`; assert that it changed exactly as
    two fresh renders differ, and return it with its files from before the switch."""
    if project is None:
        project = generate(releases, tmp_path / "project")
        (project / "notes.md").write_text("Local file.\n", encoding="utf-8")
        commit_all(project, "Local work")
    before = files(project)
    old_answers = {key: answers_of(project)[key] for key in answers}

    update(project, data=answers, vcs_ref=OLD)

    after = files(project)
    name = "-".join(f"{key}-{value}" for key, value in answers.items())
    old = files(render(tmp_path / f"fresh-{name}-old", old_answers, template=releases, vcs_ref=OLD))
    new = files(render(tmp_path / f"fresh-{name}-new", answers, template=releases, vcs_ref=OLD))
    assert sorted(after.keys() - before.keys()) == sorted(new.keys() - old.keys())
    assert sorted(before.keys() - after.keys()) == sorted(old.keys() - new.keys())
    assert after["notes.md"] == b"Local file.\n"
    differing = [name for name in new if after.get(name) != new[name]]
    assert not differing, f"after the switch these differ from a fresh render: {differing}"
    return project, before


def test_switching_an_answer_matches_a_fresh_render(releases: Path, tmp_path: Path) -> None:
    """memory → redis adds and removes exactly what a fresh render of each answer differs by."""
    project, _ = switch(releases, tmp_path, {"rate_limit_backend": "redis"})
    assert answers_of(project)["rate_limit_backend"] == "redis"
    assert re.search(r"\bredis\b", (project / "pyproject.toml").read_text(encoding="utf-8"))


def test_switching_chat_on_and_off_adds_and_removes_exactly_its_files(
    releases: Path, tmp_path: Path
) -> None:
    project, without_chat = switch(releases, tmp_path, {"ai_features": ["chat"]})
    added = files(project).keys() - without_chat.keys()
    assert "src/my_service/ai/router.py" in added
    assert "src/my_service/migrations/versions/ai_chat_0001.py" in added
    commit_all(project, "Chat on")

    switch(releases, tmp_path, {"ai_features": []}, project=project)

    assert files(project) == without_chat


GRANTED_AI_PERMISSIONS = """
import asyncio
from sqlalchemy import select
from my_service.config import Settings
from my_service.database import create_engine
from my_service.migrations import check
from my_service.rbac.models import Permission, role_permissions, user_roles
from my_service.users.models import User

async def main() -> None:
    engine = create_engine(Settings())
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(User.email, Permission.name)
            .join(user_roles, user_roles.c.user_id == User.id)
            .join(role_permissions, role_permissions.c.role_id == user_roles.c.role_id)
            .join(Permission, Permission.id == role_permissions.c.permission_id)
            .where(Permission.name.like("ai%"))
        )
        for email, name in rows:
            print(email, name)
    await engine.dispose()

check(Settings().database_url)
asyncio.run(main())
"""


@pytest.mark.slow
def test_switching_chat_on_then_migrate_keeps_an_existing_database(
    releases: Path, tmp_path: Path
) -> None:
    """On MariaDB (the strictest about DDL): data made without chat survives, and the admin
    holds the AI permissions the new branch seeds."""
    project = generate(releases, tmp_path / "project", {"database": "mysql"})
    assert_ok(run(["uv", "sync"], cwd=project, env=project_env(), timeout=INSTALL_TIMEOUT))
    with fresh_database("mysql", tmp_path / "db") as url:
        env = project_env(DATABASE_URL=url, ENVIRONMENT="test")
        assert_ok(run(["uv", "run", "my-service", "migrate"], cwd=project, env=env))
        admin = ["uv", "run", "my-service", "create-admin", "--email", "admin@example.com"]
        created = run([*admin, "--password-stdin"], cwd=project, env=env, input="Hw4$kN7@qRz2Lp\n")
        assert_ok(created)
        commit_all(project, "Local work")

        update(project, data={"ai_features": ["chat"]}, vcs_ref=OLD)
        assert_ok(run(["uv", "sync"], cwd=project, env=project_env(), timeout=INSTALL_TIMEOUT))
        assert_ok(run(["uv", "run", "my-service", "migrate"], cwd=project, env=env))
        checked = run(["uv", "run", "python", "-c", GRANTED_AI_PERMISSIONS], cwd=project, env=env)

    assert_ok(checked)
    assert "No new upgrade operations detected." in checked.stdout  # alembic check: clean
    assert sorted({line for line in checked.stdout.splitlines() if "@" in line}) == [
        "admin@example.com ai:chat",
        "admin@example.com ai_analytics:read",
        "admin@example.com ai_quotas:write",
        "admin@example.com ai_usage:read",
    ]
