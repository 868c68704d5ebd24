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

from conftest import git, render

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


def _switch_matches_a_fresh_render(
    releases: Path, tmp_path: Path, start: Mapping[str, Any], switch: Mapping[str, Any]
) -> Path:
    """Generate with `start`, update with `switch`: the project gains and loses exactly the files
    a fresh render of each answer differs by, keeps a local file, and equals the fresh render."""
    project = generate(releases, tmp_path / "project", start)
    (project / "notes.md").write_text("Local file.\n", encoding="utf-8")
    commit_all(project, "Local work")
    before = files(project)

    update(project, data=switch, vcs_ref=OLD)

    after = files(project)
    fresh_before = files(render(tmp_path / "fresh-before", start, template=releases, vcs_ref=OLD))
    fresh_after = files(
        render(tmp_path / "fresh-after", {**start, **switch}, template=releases, vcs_ref=OLD)
    )
    assert sorted(after.keys() - before.keys()) == sorted(fresh_after.keys() - fresh_before.keys())
    assert sorted(before.keys() - after.keys()) == sorted(fresh_before.keys() - fresh_after.keys())
    assert after.pop("notes.md") == b"Local file.\n"
    differing = [name for name in fresh_after if after.get(name) != fresh_after[name]]
    assert not differing, f"after the switch these differ from a fresh render: {differing}"
    for key, value in switch.items():
        assert answers_of(project)[key] == value
    return project


def test_switching_an_answer_matches_a_fresh_render(releases: Path, tmp_path: Path) -> None:
    """memory → redis adds and removes exactly what a fresh render of each answer differs by."""
    project = _switch_matches_a_fresh_render(
        releases, tmp_path, {}, {"rate_limit_backend": "redis"}
    )
    assert re.search(r"\bredis\b", (project / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("start", "switch"),
    [
        ({"ai_features": []}, {"ai_features": ["documents"]}),
        ({"ai_features": ["documents"]}, {"ai_features": []}),
    ],
    ids=["documents-on", "documents-off"],
)
def test_switching_documents_adds_and_removes_exactly_its_files(
    releases: Path, tmp_path: Path, start: dict[str, Any], switch: dict[str, Any]
) -> None:
    project = _switch_matches_a_fresh_render(releases, tmp_path, start, switch)
    package = project / "src" / "my_service"
    on = bool(switch["ai_features"])
    assert (package / "documents" / "vector_store.py").is_file() == on
    assert (package / "migrations" / "versions" / "documents_0001.py").is_file() == on
    assert ("qdrant-client" in (project / "pyproject.toml").read_text(encoding="utf-8")) == on
