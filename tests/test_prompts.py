"""The real interactive `copier copy`, driven through a pseudo-terminal: a refused option is shown
unavailable with its reason and cannot be chosen, and for every supported variant the answers a
user accepts in the prompts render exactly what the same answers given with `-d` render, whether
given in full or left to be derived.

Renders use the clean snapshot of the work tree (conftest.template_snapshot), so every render of
one session records the same `_commit` and trees compare byte for byte.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2.sandbox
import pexpect
import pytest
import yaml

from conftest import (
    BOOTED_VARIANTS,
    CHOICE_QUESTIONS,
    REPO,
    render,
    repo_tool,
    variant_answers,
)
from test_render import tree_snapshot

DOWN, UP, ENTER, SPACE, CLEAR_LINE = "\x1b[B", "\x1b[A", "\r", " ", "\x15"
PROMPT_TIMEOUT = 60
RENDER_TIMEOUT = 180

# What a user's choice of deploy_target implies for the questions that follow (SPEC §1.1).
DERIVED_FROM_DEPLOY_TARGET = {
    "compose": {"database": "sqlite", "rate_limit_backend": "memory"},
    "kubernetes": {"database": "postgresql", "rate_limit_backend": "redis"},
}


def questions() -> dict[str, dict[str, Any]]:
    config: dict[str, Any] = yaml.safe_load((REPO / "copier.yml").read_text(encoding="utf-8"))
    return {key: spec for key, spec in config.items() if not key.startswith("_")}


def asked_questions() -> list[str]:
    return [
        key
        for key, spec in questions().items()
        if spec.get("when", True) is not False and spec.get("ask", True) is not False
    ]


def choices(question: str) -> list[tuple[str, Any, str]]:
    """(label, value, validator) of each choice of a question, in menu order."""
    found = []
    for label, choice in questions()[question]["choices"].items():
        if isinstance(choice, dict):
            found.append((label, choice["value"], choice.get("validator", "")))
        else:
            found.append((label, choice, ""))
    return found


def enabled_values(question: str, answers: Mapping[str, Any]) -> list[Any]:
    """The values the menu lets the user reach: those whose validator renders nothing."""
    environment = jinja2.sandbox.SandboxedEnvironment()
    return [
        value
        for _, value, validator in choices(question)
        if not environment.from_string(validator).render(answers).strip()
    ]


def derived_data(name: str) -> dict[str, Any]:
    """The fewest `-d` answers that make the variant: what deploy_target implies is left out."""
    answers = variant_answers(name)
    data: dict[str, Any] = {}
    if answers["deploy_target"] != "compose":
        data["deploy_target"] = answers["deploy_target"]
    for key, value in DERIVED_FROM_DEPLOY_TARGET[answers["deploy_target"]].items():
        if answers[key] != value:
            data[key] = answers[key]
    if answers["ai_features"]:
        data["ai_features"] = answers["ai_features"]
    return data


class Prompt:
    """One interactive `copier copy` in a pseudo-terminal."""

    def __init__(self, template: Path, destination: Path) -> None:
        env = {**os.environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"}
        self.child = pexpect.spawn(
            repo_tool("copier"),
            ["copy", "--vcs-ref", "HEAD", str(template), str(destination)],
            env=env,
            encoding="utf-8",
            timeout=PROMPT_TIMEOUT,
            dimensions=(60, 300),  # wide enough that no menu line wraps
        )
        self.answers: dict[str, Any] = {}
        self.screens: dict[str, str] = {}

    def reach(self, question: str) -> str:
        """Wait for a question's prompt and return the label the menu points at (if a menu)."""
        self.child.expect_exact(questions()[question]["help"])
        if "choices" not in questions()[question]:
            return ""
        self.child.expect(r"» (?:\x1b\[[0-9;]*m)*([^\r\n\x1b]+)")
        self.screens[question] = self.child.before + self.child.after
        return str(self.child.match.group(1)).strip()

    def accept(self, question: str) -> None:
        self.reach(question)
        self.child.send(ENTER)

    def type(self, question: str, text: str) -> None:
        self.reach(question)
        self.child.send(CLEAR_LINE + text + ENTER)
        self.answers[question] = text

    def choose(self, question: str, value: Any, keys: str | None = None) -> None:
        """Move the pointer to `value` with the arrow keys (or press `keys`), then Enter."""
        pointed = self.reach(question)
        labels = {label: choice for label, choice, _ in choices(question)}
        reachable = enabled_values(question, {**self.answers})
        if keys is None:
            steps = reachable.index(value) - reachable.index(labels[pointed])
            keys = DOWN * (steps % len(reachable))
        self.child.send(keys + ENTER)
        self.answers[question] = value

    def answer(self, question: str, value: Any) -> None:
        """Give `value` the way a user would: Enter on a text default, arrows in a menu."""
        spec = questions()[question]
        if "choices" not in spec:
            self.accept(question)
        elif spec.get("multiselect"):
            self.reach(question)
            reachable = enabled_values(question, self.answers)
            keys = "".join(
                (SPACE if item in value else "") + DOWN for item in reachable
            )  # the pointer starts on the first reachable item and wraps round
            self.child.send(keys + ENTER)
        else:
            self.choose(question, value)
        self.answers[question] = value

    def finish(self) -> str:
        self.child.expect(pexpect.EOF, timeout=RENDER_TIMEOUT)
        self.child.close()
        output = str(self.child.before)
        assert self.child.exitstatus == 0, output[-3000:]
        return output


# -------------------------------------------------------------------------------- tests
def test_refused_option_is_shown_unavailable_and_cannot_be_chosen(
    template_snapshot: Path, tmp_path: Path
) -> None:
    prompt = Prompt(template_snapshot, tmp_path / "project")
    prompt.type("project_name", "Billing API 2")
    for question in ("project_slug", "package_name", "description", "author_name", "author_email"):
        prompt.accept(question)
    prompt.choose("deploy_target", "kubernetes")
    # The menu opens on PostgreSQL; Up would reach SQLite if it were selectable. It is shown with
    # its reason and skipped: Up wraps round to MySQL.
    prompt.choose("database", "mysql", keys=UP)
    screen = prompt.screens["database"]
    assert re.search(
        r"- SQLite \(embedded, one machine\) \(SQLite keeps its data on one pod's disk", screen
    ), screen
    # Only Redis is selectable: whichever way the user moves, Enter picks it.
    prompt.choose("rate_limit_backend", "redis", keys=UP + UP + DOWN)
    assert "In-memory limits are counted per pod" in prompt.screens["rate_limit_backend"]
    prompt.answer("ai_features", ["documents"])
    output = prompt.finish()

    recorded = yaml.safe_load((tmp_path / "project" / ".copier-answers.yml").read_text())
    assert recorded["database"] == "mysql"
    assert recorded["rate_limit_backend"] == "redis"
    assert recorded["ai_features"] == ["documents"]
    assert recorded["project_slug"] == "billing-api-2"
    assert recorded["package_name"] == "billing_api_2"
    # The next steps are announced.
    assert "scripts/bootstrap" in output
    assert "uv run billing-api-2 serve" in output


def test_derived_database_follows_the_deploy_target(
    template_snapshot: Path, tmp_path: Path
) -> None:
    """Computed values see the answers they derive from: `-d deploy_target=kubernetes` alone
    gives PostgreSQL, and its URL, everywhere (fast; the slow test below checks every file of
    every variant)."""
    project = render(tmp_path / "p", {"deploy_target": "kubernetes"}, template=template_snapshot)
    env_example = (project / ".env.example").read_text(encoding="utf-8")
    assert "DATABASE_URL=postgresql://app:app@localhost:5432/app" in env_example
    assert "sqlite://" not in (project / "README.md").read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("variant", BOOTED_VARIANTS)  # every value and every pair of values
def test_accepted_prompts_render_like_explicit_and_derived_answers(
    template_snapshot: Path, tmp_path: Path, variant: str
) -> None:
    answers = variant_answers(variant)
    prompt = Prompt(template_snapshot, tmp_path / "interactive")
    for question in asked_questions():
        prompt.answer(question, answers[question])
    prompt.finish()

    interactive = tree_snapshot(tmp_path / "interactive")
    explicit = tree_snapshot(render(tmp_path / "explicit", answers, template=template_snapshot))
    derived = tree_snapshot(
        render(tmp_path / "derived", derived_data(variant), template=template_snapshot)
    )
    for name, tree in (("explicit -d", explicit), ("derived -d", derived)):
        assert sorted(tree) == sorted(interactive), name
        differing = [path for path in interactive if interactive[path] != tree[path]]
        assert not differing, f"the interactive render and the {name} render differ: {differing}"
    assert set(CHOICE_QUESTIONS) - set(asked_questions()) <= {"ai_features"}
