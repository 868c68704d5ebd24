"""`copier update` brings a generated project to a newer template release without losing local
work, reports conflicts instead of resolving them silently, and switches an answer cleanly.

The releases are made in a throwaway copy of this repository: `0.1.0` is the work tree under
test, `0.2.0` adds a section to the generated README and a new file.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import copier
import pytest
import yaml

from conftest import (
    INSTALL_TIMEOUT,
    SUPPORTED_VARIANTS,
    ProjectCache,
    assert_ok,
    fresh_database,
    git,
    project_env,
    render,
    repo_tool,
    run,
)

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
        if path.is_file() and not {".git", ".venv"} & set(path.relative_to(tree).parts)
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
    header = "# Changes here will be overwritten by Copier; NEVER EDIT MANUALLY\n"
    assert (project / ".copier-answers.yml").read_text(encoding="utf-8").startswith(header)

    # The command line a user types, which also prints what to check next.
    result = run([repo_tool("copier"), "update", "--defaults", "--vcs-ref", NEW], cwd=project)
    assert_ok(result)
    for step in ("even when it leaves conflicts", "git status", "scripts/bootstrap", "migrate"):
        assert step in result.stderr, result.stderr[-2000:]

    text = readme.read_text(encoding="utf-8")
    assert local_line in text, "the local edit was lost"
    assert "pull newer Rampart releases into My Service." in text, "the template change is missing"
    assert text.index(local_line) < text.index("## Staying current")
    assert (project / NEW_FILE).read_text(encoding="utf-8") == "# Upgrade check for my-service\n"
    assert (project / "notes" / "local.md").read_text(encoding="utf-8") == "Our own notes.\n"
    assert answers_of(project)["_commit"] == NEW
    assert f"release `{NEW}`" in text, "the README does not name the release it came from"
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


# ------------------------------------------------------------- secrets stay ignored
def ignored(project: Path, relpath: str) -> bool:
    return run(["git", "check-ignore", "--quiet", relpath], cwd=project).returncode == 0


def test_filled_secrets_stay_ignored_through_a_deploy_target_round_trip(
    releases: Path, tmp_path: Path
) -> None:
    """kubernetes → compose → kubernetes: the operator's secrets.env is kept (it is theirs) and
    ignored by git at every step, so `git add -A` never commits it."""
    kubernetes = {"deploy_target": "kubernetes"}
    project = generate(releases, tmp_path / "project", kubernetes)
    secrets_env = "deploy/overlays/production/secrets.env"
    filled = "SECRET_KEY=the-real-production-key-0123456789abcdef\n"
    (project / secrets_env).write_text(filled, encoding="utf-8")
    (project / ".env").write_text("SECRET_KEY=a-local-key\n", encoding="utf-8")

    steps = [("generated", None), ("compose", {"deploy_target": "compose"}), ("back", kubernetes)]
    for step, switch in steps:
        if switch is not None:
            update(project, data=switch, vcs_ref=OLD)
            git("add", "--all", cwd=project)
            git("commit", "--quiet", "--no-verify", "-m", f"switch: {step}", cwd=project)
        for secret_file in (secrets_env, ".env"):
            assert ignored(project, secret_file), f"{secret_file} is not ignored after {step}"
        assert (project / secrets_env).read_text(encoding="utf-8") == filled, step
        tracked = git("ls-files", cwd=project).split()
        assert secrets_env not in tracked, f"{secrets_env} was committed after {step}"
        assert ".env" not in tracked
    assert answers_of(project)["deploy_target"] == "kubernetes"


def test_every_example_file_of_any_variant_is_ignored_in_every_variant(
    project_cache: ProjectCache, tmp_path: Path
) -> None:
    """Whatever the answers, the file an operator makes from any `*.example` stays ignored."""
    secret_files = sorted(
        {
            path.relative_to(project_cache.rendered(name)).as_posix().removesuffix(".example")
            for name in SUPPORTED_VARIANTS
            for path in project_cache.rendered(name).rglob("*.example")
        }
    )
    assert ".env" in secret_files
    assert "deploy/overlays/production/secrets.env" in secret_files
    for name in SUPPORTED_VARIANTS:
        # The variant's ignore rules in an empty repository (rendered trees stay pristine).
        probe = tmp_path / name
        probe.mkdir()
        git("init", "--quiet", cwd=probe)
        for rules in project_cache.rendered(name).rglob(".gitignore"):
            target = probe / rules.relative_to(project_cache.rendered(name))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(rules.read_bytes())
        for secret_file in secret_files:
            assert ignored(probe, secret_file), f"{secret_file} is not ignored in {name}"


# ------------------------------------------------------------ relative template path
def test_a_relative_template_path_is_flagged_after_copy(
    template_snapshot: Path, tmp_path: Path
) -> None:
    workspace = tmp_path / "workspace"
    git("clone", "--quiet", template_snapshot, workspace / "rampart", cwd=tmp_path)
    result = run(
        [repo_tool("copier"), "copy", "--defaults", "--vcs-ref", "HEAD", "rampart", "svc"],
        cwd=workspace,
    )
    assert_ok(result)
    assert answers_of(workspace / "svc")["_src_path"] == "rampart"
    assert 'the template was given as the relative path "rampart"' in result.stderr
    assert 'copier copy "$(realpath rampart)" svc' in result.stderr

    absolute = run(
        [repo_tool("copier"), "copy", "--defaults", "--vcs-ref", "HEAD",
         workspace / "rampart", "svc2"],
        cwd=workspace,
    )  # fmt: skip
    assert_ok(absolute)
    assert "relative path" not in absolute.stderr
    assert "scripts/bootstrap" in absolute.stderr


# ------------------------------------------------ bootstrap, re-locking and migrations
VERSIONS = "template/src/{{package_name}}/migrations/versions"
REVISION = re.compile(r'^revision(?:: str)? = "([^"]+)"', re.MULTILINE)
DOWN_REVISION = re.compile(r'^down_revision(?:: [^=]+)? = "([^"]+)"', re.MULTILINE)
RELEASE_MODEL = '''"""A table a later template release adds (made up by the test)."""

from sqlalchemy.orm import Mapped, mapped_column

from .database import Base


class ReleaseNote(Base):
    __tablename__ = "release_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
'''
RELEASE_REVISION = '''"""A core revision of a later template release (made up by the test)."""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down_revision}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "release_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_notes")),
    )


def downgrade() -> None:
    op.drop_table("release_notes")
'''
TEAM_MODEL = '''"""The team's own table."""

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from .database import Base


class Invoice(Base):
    __tablename__ = "invoices"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
'''


def core_head(template: Path) -> str:
    """The newest revision of the template's core chain (numeric ids, one chain)."""
    revisions, parents = set(), set()
    for script in (template / VERSIONS).glob("*.py"):
        text = script.read_text(encoding="utf-8")
        found = REVISION.search(text)
        if found and found.group(1).isdigit():
            revisions.add(found.group(1))
            parent = DOWN_REVISION.search(text)
            if parent:
                parents.add(parent.group(1))
    heads = revisions - parents
    assert len(heads) == 1, f"the core chain must have one head, found {heads}"
    return heads.pop()


def bootstrap(project: Path) -> subprocess.CompletedProcess[str]:
    result = run(["scripts/bootstrap"], cwd=project, env=project_env(), timeout=INSTALL_TIMEOUT)
    assert_ok(result)
    return result


@pytest.fixture(scope="module")
def migration_release(template_snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OLD is the work tree; NEW adds a core revision on the `rampart` chain and its model."""
    repo = tmp_path_factory.mktemp("migration-release") / "rampart"
    git("clone", "--quiet", "--no-tags", template_snapshot, repo, cwd=repo.parent)
    git("tag", OLD, cwd=repo)
    head = core_head(repo)
    new_revision = f"{int(head) + 1:04d}"
    package = repo / "template" / "src" / "{{package_name}}"
    (package / "release_notes.py").write_text(RELEASE_MODEL, encoding="utf-8")
    models = package / "models.py"
    text = models.read_text(encoding="utf-8")
    anchor = "from .database import Base\n"
    models.write_text(
        text.replace(anchor, anchor + "from .release_notes import ReleaseNote  # noqa: F401\n"),
        encoding="utf-8",
    )
    (repo / VERSIONS / f"{new_revision}_release_notes.py").write_text(
        RELEASE_REVISION.format(revision=new_revision, down_revision=head), encoding="utf-8"
    )
    commit_all(repo, f"Release {NEW}: core revision {new_revision}")
    git("tag", NEW, cwd=repo)
    return repo


@pytest.mark.slow
def test_team_migration_and_template_migration_both_apply_after_update(
    migration_release: Path, tmp_path: Path
) -> None:
    """The team adds a revision on its own branch; a release adds a core revision; after
    `copier update`, `migrate` applies both heads and `alembic check` is clean."""
    project = generate(migration_release, tmp_path / "project")
    bootstrap(project)  # right after copy, before anything was installed
    commit_all(project, "Bootstrapped")
    database = f"sqlite:///{tmp_path / 'app.db'}"
    env = project_env(DATABASE_URL=database, ENVIRONMENT="development")
    slug = answers_of(project)["project_slug"]
    package = project / "src" / answers_of(project)["package_name"]

    def uv_run(*args: str) -> subprocess.CompletedProcess[str]:
        result = run(["uv", "run", *args], cwd=project, env=env)
        assert_ok(result)
        return result

    # The team's own table and revision, the way the generated README says.
    uv_run(slug, "migrate")
    (package / "invoices.py").write_text(TEAM_MODEL, encoding="utf-8")
    with (package / "models.py").open("a", encoding="utf-8") as models:
        models.write("\nfrom .invoices import Invoice  # noqa: E402, F401\n")
    uv_run(
        "alembic", "revision", "--autogenerate", "--head", "base", "--branch-label", "app",
        "--depends-on", "rampart@head", "-m", "add invoices",
    )  # fmt: skip
    uv_run(slug, "migrate")
    uv_run("alembic", "check")
    commit_all(project, "Invoices")

    update(project)  # to NEW, which adds a core revision
    assert not leftovers_of_a_merge(project)
    bootstrap(project)
    migrated = uv_run(slug, "migrate")
    assert "database migrated" in migrated.stdout
    heads = uv_run("alembic", "heads").stdout
    assert "(app)" in heads
    assert "(rampart)" in heads
    current = uv_run("alembic", "current").stdout
    assert len([line for line in current.splitlines() if "(head)" in line]) == 2, current
    assert "No new upgrade operations detected" in uv_run("alembic", "check").stdout
    # The team's next revision goes on its branch even with several heads.
    uv_run("alembic", "revision", "--head", "app@head", "-m", "next")


@pytest.mark.slow
def test_bootstrap_is_idempotent_and_relocks_after_a_switch(releases: Path, tmp_path: Path) -> None:
    project = render(tmp_path / "project", template=releases, vcs_ref=OLD)
    first = bootstrap(project)
    assert "git repository: created" in first.stdout
    assert (project / ".git").is_dir()
    assert os.access(project / ".git" / "hooks" / "pre-commit", os.X_OK)
    secret = re.search(r"^SECRET_KEY=(\S{40,})$", (project / ".env").read_text(), re.MULTILINE)
    assert secret, "bootstrap wrote no fresh SECRET_KEY into .env"
    assert secret.group(1) not in (project / ".env.example").read_text()
    assert stat.S_IMODE((project / ".env").stat().st_mode) == 0o600
    commit_all(project, "Generated and bootstrapped")
    before = files(project)

    again = bootstrap(project)
    assert ".env: kept" in again.stdout
    assert files(project) == before, "a second bootstrap changed the project"
    assert not git("status", "--porcelain", cwd=project).strip()

    update(project, data={"database": "postgresql"}, vcs_ref=OLD)
    stale = run(["uv", "lock", "--check"], cwd=project, env=project_env())
    assert stale.returncode != 0, "the switch should leave uv.lock stale"
    bootstrap(project)
    assert_ok(run(["uv", "lock", "--check"], cwd=project, env=project_env()))
    assert "asyncpg" in (project / "uv.lock").read_text(encoding="utf-8")
    assert (project / ".env").read_bytes() == before[".env"], "bootstrap overwrote .env"


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


@pytest.mark.parametrize(
    ("feature", "its_files"),
    [
        ("chat", ["ai/router.py", "migrations/versions/ai_chat_0001.py"]),
        ("documents", ["documents/vector_store.py", "migrations/versions/documents_0001.py"]),
    ],
)
def test_switching_an_ai_feature_on_and_off_adds_and_removes_exactly_its_files(
    releases: Path, tmp_path: Path, feature: str, its_files: list[str]
) -> None:
    project, without_it = switch(releases, tmp_path, {"ai_features": [feature]})
    added = files(project).keys() - without_it.keys()
    assert {f"src/my_service/{name}" for name in its_files} <= added
    assert "src/my_service/ai_provider.py" in added
    commit_all(project, f"{feature} on")

    switch(releases, tmp_path, {"ai_features": []}, project=project)

    assert files(project) == without_it
