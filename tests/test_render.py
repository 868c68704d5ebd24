"""Fast tier: every supported combination renders clean; every unsupported one is refused.

Rendered trees come from the work tree (see conftest.py) and are shared by the session.
"""

from __future__ import annotations

import ast
import json
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from conftest import (
    REPO,
    SUPPORTED_VARIANTS,
    ProjectCache,
    assert_ok,
    git,
    render,
    repo_tool,
    run,
    variant_answers,
)

# Each refused combination with the texts its message must contain: what is wrong, and what
# to pick instead. Adding a case is one line.
KUBERNETES_SQLITE = {"deploy_target": "kubernetes", "database": "sqlite"}
KUBERNETES_MEMORY = {"deploy_target": "kubernetes", "rate_limit_backend": "memory"}
REFUSED: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "kubernetes+sqlite": (
        {**KUBERNETES_SQLITE, "rate_limit_backend": "redis"},
        ("one pod's disk", "choose postgresql or mysql"),
    ),
    "kubernetes+memory": (
        {**KUBERNETES_MEMORY, "database": "postgresql"},
        ("counted per pod", "choose redis"),
    ),
    # No hidden value unlocks a refusal: the old `unavailable_values` switch and the old list of
    # refused package names are gone (the names live inside package_name's validator).
    "old-unlock-switch": (
        {"unavailable_values": [], **KUBERNETES_SQLITE, "rate_limit_backend": "redis"},
        ("one pod's disk",),
    ),
    "old-forbidden-names": (
        {"forbidden_package_names": [], "package_name": "json"},
        ("shadows a standard-library",),
    ),
    "package-shadows-stdlib": ({"package_name": "json"}, ("shadows a standard-library", "json_")),
    "package-is-keyword": ({"package_name": "class"}, ("Python keyword",)),
    "package-shadows-dependency": ({"package_name": "fastapi"}, ("dependency module",)),
    "package-not-identifier": ({"package_name": "my-service"}, ("Python identifier",)),
    "package-uppercase": ({"package_name": "MyService"}, ("Python identifier",)),
    "slug-uppercase": ({"project_slug": "My-Service"}, ("^[a-z][a-z0-9-]*[a-z0-9]$",)),
    "slug-trailing-dash": ({"project_slug": "my-service-"}, ("^[a-z][a-z0-9-]*[a-z0-9]$",)),
    "slug-leading-digit": ({"project_slug": "1-service"}, ("^[a-z][a-z0-9-]*[a-z0-9]$",)),
    "slug-with-space": ({"project_slug": "my service"}, ("^[a-z][a-z0-9-]*[a-z0-9]$",)),
    "email-without-at": ({"author_email": "platform.example.com"}, ("valid email",)),
    "email-without-domain": ({"author_email": "platform@localhost"}, ("valid email",)),
    "empty-project-name": ({"project_name": "   "}, ("must not be empty",)),
}

# Copier features that run code or load code, and so would need `--trust`.
TRUST_REQUIRING_KEYS = ("_tasks", "_migrations", "_jinja_extensions")

# Opening and closing Jinja delimiters as templates write them (`{{ x }}`, `{%- if %}`,
# `{# #}`). Python's own `}}` (nested literals) does not match.
JINJA_RESIDUE = re.compile(r"\{\{-?\s|\s-?\}\}|\{%-?\s|\s-?%\}|\{#-?\s|\s-?#\}|\{%[A-Za-z_]")
# `{{name}}` written without spaces; in Python it may be an f-string escape, so only elsewhere.
TIGHT_EXPRESSION = re.compile(r"\{\{[A-Za-z_]")
# GitHub Actions expressions, legitimate in workflow files only.
GITHUB_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
# Prometheus alert templates (`{{ $labels.route }}`, `{{ $value }}`) and Grafana legend templates
# (`{{route}}`), legitimate in the shipped monitoring files only.
MONITORING_TEMPLATE = re.compile(r"\{\{ \$(?:labels|value)\b[^}]*\}\}|\{\{[a-z_]+\}\}")

CODE_AND_CONFIG_SUFFIXES = {".py", ".toml", ".yml", ".yaml", ".ini", ".cfg", ".json", ".mako"}


# ------------------------------------------------------------------------------ helpers
def files(tree: Path) -> Iterator[Path]:
    for path in sorted(tree.rglob("*")):
        if path.is_file() and ".git" not in path.relative_to(tree).parts:
            yield path


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


def relative(path: Path, tree: Path) -> str:
    return path.relative_to(tree).as_posix()


def is_workflow(path: Path, tree: Path) -> bool:
    parts = path.relative_to(tree).parts
    return parts[0] == ".github" and path.suffix in {".yml", ".yaml"}


def is_monitoring(path: Path, tree: Path) -> bool:
    parts = path.relative_to(tree).parts
    return parts[0] == "observability" or parts[:3] == ("deploy", "base", "monitoring")


def is_code_or_config(path: Path) -> bool:
    return (
        path.suffix in CODE_AND_CONFIG_SUFFIXES
        or path.name in {"Dockerfile", "Makefile"}
        or path.name.startswith(".env")
    )


def has_residue(line: str, *, python: bool) -> bool:
    return bool(JINJA_RESIDUE.search(line) or (not python and TIGHT_EXPRESSION.search(line)))


def tree_snapshot(tree: Path) -> dict[str, tuple[int, bytes]]:
    return {
        relative(path, tree): (stat.S_IMODE(path.stat().st_mode), path.read_bytes())
        for path in files(tree)
    }


def dependency_names(pyproject: Mapping[str, Any]) -> set[str]:
    project = pyproject.get("project", {})
    requirements: list[str] = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    for group in pyproject.get("dependency-groups", {}).values():
        requirements += [item for item in group if isinstance(item, str)]
    names = set()
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        assert match, f"unparsable requirement {requirement!r}"
        names.add(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    return names


def imported_modules(tree: Path) -> dict[str, set[str]]:
    """Top-level modules imported anywhere, each with the files that import it."""
    found: dict[str, set[str]] = {}
    for path in files(tree):
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(relative(path, tree))
    return found


def rendered_path(template_relpath: str, answers: Mapping[str, Any]) -> str | None:
    """Where copier puts a file of template/, or None when its name renders empty."""
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 - file names, not HTML
    context = {**answers, "_copier_conf": {"answers_file": ".copier-answers.yml"}}
    parts = []
    for part in template_relpath.split("/"):
        name = environment.from_string(part).render(context)
        if not name:
            return None
        parts.append(name)
    return "/".join(parts).removesuffix(".jinja")


def template_executables() -> list[str]:
    """Files of template/ with a run bit, on disk or in git's index."""
    template = REPO / "template"
    index = git("ls-files", "--stage", "--", "template", cwd=REPO)
    executable = {
        line.split("\t", 1)[1].removeprefix("template/")
        for line in index.splitlines()
        if line.startswith("100755")
    }
    executable |= {
        relative(path, template) for path in files(template) if path.stat().st_mode & 0o111
    }
    return sorted(executable)


# ----------------------------------------------------------------------------- features
@dataclass(frozen=True)
class Feature:
    """What a feature leaves in a rendered project; none of it may exist when it is off."""

    name: str
    is_on: Callable[[Mapping[str, Any]], bool]
    paths: tuple[str, ...] = ()  # globs relative to the project; {pkg} is the package
    distributions: tuple[str, ...] = ()  # dependency names in pyproject.toml
    modules: tuple[str, ...] = ()  # top-level imports
    words: tuple[str, ...] = field(default=())  # regexes, in code and config, not comments


FEATURES = (
    Feature(
        "kubernetes",
        lambda answers: answers["deploy_target"] == "kubernetes",
        paths=("deploy", "k8s", "kustomization.yaml"),
        modules=("kubernetes",),
        words=(r"\bkustomiz",),
    ),
    Feature(
        "postgresql",
        lambda answers: answers["database"] == "postgresql",
        distributions=("asyncpg", "psycopg", "psycopg2", "psycopg2-binary"),
        modules=("asyncpg", "psycopg", "psycopg2"),
    ),
    Feature(
        "mysql",
        lambda answers: answers["database"] == "mysql",
        distributions=("asyncmy", "aiomysql", "pymysql", "mysqlclient"),
        modules=("asyncmy", "aiomysql", "pymysql", "MySQLdb"),
    ),
    Feature(
        "sqlite",
        lambda answers: answers["database"] == "sqlite",
        distributions=("aiosqlite",),
        modules=("aiosqlite",),
    ),
    Feature(
        "redis",
        lambda answers: answers["rate_limit_backend"] == "redis",
        distributions=("redis", "hiredis", "coredis"),
        modules=("redis", "coredis"),
        words=(r"\bredis\b",),
    ),
    Feature(
        "ai",
        lambda answers: bool(answers["ai_features"]),
        paths=("src/{pkg}/ai", "tests/ai", "tests/**/test_ai*.py"),
        distributions=("openai",),
        modules=("openai",),
        # The provider settings both AI features share (AI_PROVIDER, AI_BASE_URL, ...).
        words=(r"\brate_limit_ai\b", r"/api/v1/ai\b", r"\bai_provider\b"),
    ),
    Feature(
        "chat",
        lambda answers: "chat" in answers["ai_features"],
        paths=(
            "src/{pkg}/ai",
            "src/{pkg}/migrations/versions/ai_chat_*.py",
            "tests/**/test_ai_*.py",
            "tests/ai_stub.py",
        ),
        words=(r"\bai:chat\b", r"\bai_daily_tokens_per_user\b", r"\bai_chat_0001\b"),
    ),
    Feature(
        "documents",
        lambda answers: "documents" in answers["ai_features"],
        paths=(
            "src/{pkg}/documents",
            "src/{pkg}/ai/documents*",
            "src/{pkg}/ai/grounding.py",
            "tests/**/test_documents*.py",
            "tests/**/test_ai_grounding.py",
        ),
        words=(r"\bdocuments:[a-z]+\b", r"/api/v1/(ai/)?documents\b"),
    ),
)


def traces(feature: Feature, project: Path, package: str) -> list[str]:
    """Everything in `project` that belongs to `feature`, described for a failure message."""
    found = []
    for pattern in feature.paths:
        found += [
            f"path {relative(path, project)}" for path in project.glob(pattern.format(pkg=package))
        ]
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    found += [
        f"dependency {name}" for name in dependency_names(pyproject) & set(feature.distributions)
    ]
    imports = imported_modules(project)
    found += [
        f"import of {module} in {', '.join(sorted(imports[module]))}"
        for module in feature.modules
        if module in imports
    ]
    if feature.words:
        word = re.compile("|".join(feature.words), re.IGNORECASE)
        for path in files(project):
            text = text_of(path) if is_code_or_config(path) else None
            for number, line in enumerate((text or "").splitlines(), 1):
                if not line.lstrip().startswith("#") and word.search(line):
                    found.append(f"{relative(path, project)}:{number}: {line.strip()}")
    return found


# -------------------------------------------------------------------------------- tests
def test_copier_yml_needs_no_trust() -> None:
    documents = [doc for doc in yaml.safe_load_all((REPO / "copier.yml").read_text()) if doc]
    present = {key for doc in documents for key in doc if key in TRUST_REQUIRING_KEYS}
    assert not present, f"copier.yml uses {sorted(present)}: `copier copy` would need --trust"
    assert all(doc.get("_subdirectory", "template") == "template" for doc in documents)


def test_supported_variant_renders_without_trust(
    project_cache: ProjectCache, supported_variant: str
) -> None:
    project = project_cache.rendered(supported_variant)  # rendered with unsafe=False
    package = variant_answers(supported_variant)["package_name"]
    for expected in ("pyproject.toml", "README.md", f"src/{package}/__init__.py", ".gitignore"):
        assert (project / expected).is_file(), f"{expected} is missing from {supported_variant}"


def test_render_includes_uncommitted_changes(
    project_cache: ProjectCache, template_snapshot: Path, tmp_path: Path, supported_variant: str
) -> None:
    """Guards the premise of the whole suite: what is rendered is the work tree."""
    from_repo = tree_snapshot(project_cache.rendered(supported_variant))
    from_snapshot = tree_snapshot(
        render(tmp_path / "p", SUPPORTED_VARIANTS[supported_variant], template=template_snapshot)
    )
    answers = ".copier-answers.yml"  # records where and which commit it came from
    for tree in (from_repo, from_snapshot):
        # The release is recorded (answers file, README): the two renders' commits differ.
        commit = str(yaml.safe_load(tree.pop(answers)[1])["_commit"]).encode()
        assert commit
        for name, (mode, content) in tree.items():
            tree[name] = (mode, content.replace(commit, b"<commit>"))
    assert sorted(from_repo) == sorted(from_snapshot)
    changed = [name for name in from_repo if from_repo[name] != from_snapshot[name]]
    assert not changed, f"rendering {REPO} did not render its work tree: {changed}"


def test_no_jinja_residue(project_cache: ProjectCache, supported_variant: str) -> None:
    project = project_cache.rendered(supported_variant)
    residue = []
    for path in files(project):
        name = relative(path, project)
        if "{{" in name or "{%" in name or name.endswith(".jinja"):
            residue.append(f"file name {name}")
        text = text_of(path)
        if text is None:
            continue
        if is_workflow(path, project):
            text = GITHUB_EXPRESSION.sub("", text)
        if is_monitoring(path, project):
            text = MONITORING_TEMPLATE.sub("", text)
        for number, line in enumerate(text.splitlines(), 1):
            if has_residue(line, python=path.suffix == ".py"):
                residue.append(f"{name}:{number}: {line.strip()}")
    assert not residue, "Jinja left in the rendered project:\n" + "\n".join(residue)


def test_jinja_residue_check_catches_leftovers() -> None:
    leftovers = ["name = {{ project_slug }}", "{%- if x %}", "{%if x%}", "{# note #}"]
    assert all(has_residue(line, python=True) for line in leftovers)
    assert has_residue("name = {{project_slug}}", python=False)
    legitimate = ['{"a": {"b": 1}}', "x: ${VAR:-1}", "run: ${#array}"]
    assert not any(has_residue(line, python=False) for line in legitimate)
    assert not has_residue('f"{{literal}}"', python=True)
    workflow_line = "key: ci-${{ github.workflow }}-${{ github.ref }}"
    assert has_residue(workflow_line, python=False)
    assert not has_residue(GITHUB_EXPRESSION.sub("", workflow_line), python=False)


def test_answers_file_records_answers_and_no_secrets(
    project_cache: ProjectCache, supported_variant: str
) -> None:
    recorded = yaml.safe_load(
        (project_cache.rendered(supported_variant) / ".copier-answers.yml").read_text()
    )
    questions = {
        key: spec
        for doc in yaml.safe_load_all((REPO / "copier.yml").read_text())
        if doc
        for key, spec in doc.items()
        if not key.startswith("_")
    }
    asked = {
        key
        for key, spec in questions.items()
        if not (isinstance(spec, dict) and spec.get("when") is False)
    }
    secret = {
        key for key, spec in questions.items() if isinstance(spec, dict) and spec.get("secret")
    }
    expected = {
        key: value for key, value in variant_answers(supported_variant).items() if key in asked
    }

    assert {key: recorded.get(key) for key in expected} == expected
    assert recorded["_src_path"]
    assert recorded["_commit"]
    stored_questions = {key for key in recorded if not key.startswith("_")}
    assert stored_questions == asked - secret, "computed or secret values were stored"
    assert not [key for key in recorded if re.search(r"secret|password|token|api_key", key, re.I)]


def test_structured_files_parse(project_cache: ProjectCache, supported_variant: str) -> None:
    project = project_cache.rendered(supported_variant)
    parsed = 0
    for path in files(project):
        text = (
            path.read_text(encoding="utf-8")
            if path.suffix in {".yml", ".yaml", ".toml", ".json"}
            else None
        )
        if text is None:
            continue
        try:
            if path.suffix == ".toml":
                tomllib.loads(text)
            elif path.suffix == ".json":
                json.loads(text)
            else:
                list(yaml.safe_load_all(text))
        except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
            pytest.fail(f"{relative(path, project)} does not parse: {error}")
        parsed += 1
    assert parsed >= 3, "expected at least pyproject.toml, compose.yaml and the answers file"


def test_python_compiles(project_cache: ProjectCache, supported_variant: str) -> None:
    project = project_cache.rendered(supported_variant)
    sources = [path for path in files(project) if path.suffix == ".py"]
    assert sources
    for path in sources:
        try:
            compile(path.read_text(encoding="utf-8"), str(path), "exec", dont_inherit=True)
        except SyntaxError as error:
            pytest.fail(f"{relative(path, project)} does not compile: {error}")


def test_ruff_check_passes_with_project_config(
    project_cache: ProjectCache, supported_variant: str
) -> None:
    project = project_cache.rendered(supported_variant)
    assert_ok(run([repo_tool("ruff"), "check", "--no-cache", "--no-fix", "."], cwd=project))


def test_ruff_format_passes_with_project_config(
    project_cache: ProjectCache, supported_variant: str
) -> None:
    project = project_cache.rendered(supported_variant)
    assert_ok(run([repo_tool("ruff"), "format", "--check", "--no-cache", "."], cwd=project))


def test_rendering_is_deterministic(
    template_snapshot: Path, tmp_path: Path, supported_variant: str
) -> None:
    data = SUPPORTED_VARIANTS[supported_variant]
    first = tree_snapshot(render(tmp_path / "first", data, template=template_snapshot))
    second = tree_snapshot(render(tmp_path / "second", data, template=template_snapshot))
    assert sorted(first) == sorted(second)
    differing = [name for name in first if first[name] != second[name]]
    assert not differing, f"two renders with the same answers differ in {differing}"


def test_off_features_leave_nothing_behind(
    project_cache: ProjectCache, supported_variant: str
) -> None:
    answers = variant_answers(supported_variant)
    project = project_cache.rendered(supported_variant)
    off = [feature for feature in FEATURES if not feature.is_on(answers)]
    assert off, "expected at least one feature to be off"
    leftovers = {
        feature.name: found
        for feature in off
        if (found := traces(feature, project, answers["package_name"]))
    }
    assert not leftovers, f"features that are off left traces: {json.dumps(leftovers, indent=2)}"


def test_on_features_are_detected(project_cache: ProjectCache, supported_variant: str) -> None:
    """The trace finder can fail: the features that are on do leave traces."""
    answers = variant_answers(supported_variant)
    project = project_cache.rendered(supported_variant)
    for feature in FEATURES:
        if feature.is_on(answers) and (feature.distributions or feature.paths):
            assert traces(feature, project, answers["package_name"]), feature.name


def test_text_files_use_lf_and_gitattributes_pins_it(
    project_cache: ProjectCache, supported_variant: str
) -> None:
    project = project_cache.rendered(supported_variant)
    attributes = (project / ".gitattributes").read_text(encoding="utf-8")
    assert re.search(r"^\*\s+.*\beol=lf\b", attributes, re.MULTILINE), attributes
    crlf = [relative(path, project) for path in files(project) if b"\r\n" in path.read_bytes()]
    assert not crlf, f"CRLF line endings in {crlf}"


def test_executable_bits_survive_rendering(
    project_cache: ProjectCache, supported_variant: str
) -> None:
    project = project_cache.rendered(supported_variant)
    answers = variant_answers(supported_variant)
    for template_file in template_executables():
        target = rendered_path(template_file, answers)
        if target is None:
            continue
        assert os.access(project / target, os.X_OK), f"{target} lost its run bit"
    for path in files(project):
        starts_like_script = path.read_bytes()[:2] == b"#!"
        executable = bool(path.stat().st_mode & stat.S_IXUSR)
        assert starts_like_script == executable, (
            f"{relative(path, project)}: shebang={starts_like_script}, executable={executable}"
        )


def test_copier_keeps_the_run_bit_of_a_template_script(
    template_snapshot: Path, tmp_path: Path
) -> None:
    """The mechanism behind the test above, with a script the template may not have yet."""
    template = tmp_path / "template-repo"
    git("clone", "--quiet", template_snapshot, template, cwd=tmp_path)
    script = template / "template" / "scripts" / "smoke-check.sh"
    script.parent.mkdir(exist_ok=True)
    script.write_text("#!/usr/bin/env bash\necho ok\n", encoding="utf-8")
    script.chmod(0o755)
    git("add", "--all", cwd=template)
    git("commit", "--quiet", "-m", "Add an executable script", cwd=template)
    project = render(tmp_path / "project", template=template)
    assert os.access(project / "scripts" / "smoke-check.sh", os.X_OK)
    assert not os.access(project / "pyproject.toml", os.X_OK)


@pytest.mark.parametrize(("answers", "expected"), list(REFUSED.values()), ids=list(REFUSED))
def test_unsupported_combination_is_refused(
    copie: Any, answers: dict[str, Any], expected: tuple[str, ...]
) -> None:
    result = copie.copy(extra_answers=answers)
    assert result.exit_code != 0, f"{answers} rendered, but must be refused"
    assert result.project_dir is None
    message = str(result.exception)
    assert re.search(r"Validation error for question|Invalid choice for", message), message
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"


# A valid project, the change of answers that makes it refused, and the reason copier must give.
REFUSED_CHANGES = {
    "kubernetes+sqlite": (
        {"deploy_target": "kubernetes"},
        {"database": "sqlite"},
        "one pod's disk",
    ),
    "kubernetes+memory": (
        {"deploy_target": "kubernetes"},
        {"rate_limit_backend": "memory"},
        "counted per pod",
    ),
}


@pytest.mark.parametrize("path", ["data", "data-file", "update-replay"])
@pytest.mark.parametrize(
    ("valid", "change", "reason"), list(REFUSED_CHANGES.values()), ids=list(REFUSED_CHANGES)
)
def test_refusal_holds_on_every_path(
    template_snapshot: Path,
    tmp_path: Path,
    path: str,
    valid: dict[str, Any],
    change: dict[str, Any],
    reason: str,
) -> None:
    """`-d`, `--data-file` and the replay of recorded answers by `copier update` all refuse (the
    interactive menu is tests/test_prompts.py)."""
    copier_cli = repo_tool("copier")
    project = tmp_path / "project"
    if path == "data":
        with pytest.raises(ValueError, match=re.escape(reason)):
            render(project, {**valid, **change}, template=template_snapshot)
        assert not project.exists()
        return
    if path == "data-file":
        data_file = tmp_path / "answers.yml"
        data_file.write_text(yaml.safe_dump({**valid, **change}), encoding="utf-8")
        result = run(
            [copier_cli, "copy", "--defaults", "--vcs-ref", "HEAD", "--data-file", data_file,
             template_snapshot, project],
        )  # fmt: skip
        assert result.returncode != 0, result.stderr[-2000:]
        assert reason in result.stderr, result.stderr[-2000:]
        assert not project.exists()
        return
    render(project, valid, template=template_snapshot)
    answers_file = project / ".copier-answers.yml"
    recorded = yaml.safe_load(answers_file.read_text(encoding="utf-8"))
    answers_file.write_text(yaml.safe_dump({**recorded, **change}), encoding="utf-8")
    git("init", "--quiet", cwd=project)
    git("add", "--all", cwd=project)
    git("commit", "--quiet", "--no-verify", "-m", "answers edited by hand", cwd=project)
    before = tree_snapshot(project)
    result = run([copier_cli, "update", "--defaults", "--vcs-ref", "HEAD"], cwd=project)
    assert result.returncode != 0, result.stderr[-2000:]
    assert reason in result.stderr, result.stderr[-2000:]
    assert tree_snapshot(project) == before, "a refused update changed the project"


def test_computed_values_cannot_be_set(tmp_path: Path) -> None:
    """`-d` and `--data-file` give `data`: a computed value given there is refused."""
    with pytest.raises(ValueError, match="database_url_default is computed from database"):
        render(tmp_path / "p", {"database": "postgresql", "database_url_default": "sqlite://"})
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    ("given", "derived"),
    [
        (
            {"project_name": "Billing API 2"},
            {"project_slug": "billing-api-2", "package_name": "billing_api_2"},
        ),
        ({"project_name": "  42 Ledger!  "}, {"project_slug": "ledger", "package_name": "ledger"}),
        ({"deploy_target": "compose"}, {"database": "sqlite", "rate_limit_backend": "memory"}),
        (
            {"deploy_target": "kubernetes"},
            {"database": "postgresql", "rate_limit_backend": "redis"},
        ),
    ],
)
def test_defaults_are_derived_from_earlier_answers(
    tmp_path: Path, given: dict[str, Any], derived: dict[str, Any]
) -> None:
    project = render(tmp_path / "project", given)
    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert {key: recorded[key] for key in derived} == derived
