"""The variant lists: built from copier.yml's values, in agreement with its refusals, and booted
by a covering set that meets every pair of answers."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import jinja2.sandbox
import pytest
import yaml

from conftest import (
    BOOTED_VARIANTS,
    CHOICE_QUESTIONS,
    DEFAULT_ANSWERS,
    NOT_YET_AVAILABLE,
    REPO,
    SUPPORTED_VARIANTS,
    choice_values,
    variant_answers,
)

Pair = frozenset[tuple[str, Any]]


def factors(answers: Mapping[str, Any]) -> dict[str, Any]:
    """An answer set as independent factors: one per single choice, one on/off per AI value, so
    an AI value that becomes available brings its pairs with every other answer."""
    found = {question: answers[question] for question in CHOICE_QUESTIONS[:-1]}
    for value in choice_values("ai_features"):
        found[f"ai_features:{value}"] = value in answers["ai_features"]
    return found


def pairs(variants: Iterable[str]) -> set[Pair]:
    found = set()
    for name in variants:
        items = sorted(factors(variant_answers(name)).items())
        found |= {frozenset(pair) for pair in itertools.combinations(items, 2)}
    return found


def missing_pairs(booted: Iterable[str]) -> list[list[tuple[str, Any]]]:
    return sorted(sorted(pair) for pair in pairs(SUPPORTED_VARIANTS) - pairs(booted))


def refusals_in_copier_yml(answers: Mapping[str, Any]) -> list[str]:
    """The reasons copier.yml's per-choice validators give for these answers (none: accepted)."""
    config = yaml.safe_load((REPO / "copier.yml").read_text(encoding="utf-8"))
    environment = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined)
    reasons = []
    for question in CHOICE_QUESTIONS:
        chosen = answers[question] if question == "ai_features" else [answers[question]]
        for choice in config[question]["choices"].values():
            if isinstance(choice, dict) and choice["value"] in chosen:
                reason = environment.from_string(choice.get("validator", "")).render(answers)
                if reason.strip():
                    reasons.append(reason.strip())
    return reasons


def every_combination() -> list[dict[str, Any]]:
    values = {question: choice_values(question) for question in CHOICE_QUESTIONS}
    subsets = [
        list(subset)
        for size in range(len(values["ai_features"]) + 1)
        for subset in itertools.combinations(values["ai_features"], size)
    ]
    domains = [*(values[question] for question in CHOICE_QUESTIONS[:-1]), subsets]
    return [
        {**DEFAULT_ANSWERS, **dict(zip(CHOICE_QUESTIONS, combination, strict=True))}
        for combination in itertools.product(*domains)
    ]


# -------------------------------------------------------------------------------- tests
def test_supported_variants_are_exactly_the_combinations_copier_accepts() -> None:
    accepted = {
        "-".join(
            [combo["deploy_target"], combo["database"], combo["rate_limit_backend"]]
            + combo["ai_features"]
        )
        for combo in every_combination()
        if not refusals_in_copier_yml(combo)
    }
    assert accepted == set(SUPPORTED_VARIANTS)
    assert "kubernetes-mysql-redis" in SUPPORTED_VARIANTS


def test_not_yet_available_values_are_refused_by_copier_yml() -> None:
    for question, values in NOT_YET_AVAILABLE.items():
        for value in values:
            answers = {**DEFAULT_ANSWERS, question: [value] if question == "ai_features" else value}
            assert any("not available yet" in reason for reason in refusals_in_copier_yml(answers))


def test_booted_variants_are_supported() -> None:
    assert set(BOOTED_VARIANTS) <= set(SUPPORTED_VARIANTS)
    assert len(set(BOOTED_VARIANTS)) == len(BOOTED_VARIANTS)


def test_booted_set_covers_every_pair_of_answers() -> None:
    assert not missing_pairs(BOOTED_VARIANTS), missing_pairs(BOOTED_VARIANTS)
    # Every value of every question is booted (pairs imply it; said for the reader).
    for question in CHOICE_QUESTIONS[:-1]:
        supported = {variant_answers(name)[question] for name in SUPPORTED_VARIANTS}
        assert supported == {variant_answers(name)[question] for name in BOOTED_VARIANTS}


@pytest.mark.parametrize("dropped", BOOTED_VARIANTS)
def test_booted_set_has_no_spare_variant(dropped: str) -> None:
    """Each boot costs minutes: none can go without losing a pair (the check can fail, too)."""
    assert missing_pairs(name for name in BOOTED_VARIANTS if name != dropped)
