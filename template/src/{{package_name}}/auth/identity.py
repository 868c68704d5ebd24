"""Identities people can tell apart: emails NFKC-normalised and case-folded, and names and
addresses that cannot hide invisible, bidirectional or look-alike characters."""

from __future__ import annotations

import unicodedata

# Unicode categories no identity needs: controls, format characters (bidi overrides, zero-width
# joiners, soft hyphens...), private use, unassigned, separators other than the plain space.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp"})
_SPACES_IN_NAMES = frozenset({" "})

# Lower-case letters of other scripts that render like Latin ones (Unicode's confusables for
# the Latin alphabet, Cyrillic and Greek; addresses are case-folded before the check). A label
# made only of these spoofs a Latin one.
_LATIN_LOOKALIKES = frozenset("аеорсухіјѕԁԛԝһӏвкмнтԍοαρνιυκτχε")


def _script(char: str) -> str | None:
    """The script of a letter (first word of its Unicode name), None for anything else."""
    if not unicodedata.category(char).startswith("L"):
        return None
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0] if name else "UNKNOWN"


def normalize_email(email: str) -> str:
    """The canonical form used for uniqueness and lookups: NFKC, then case-folded. `alice`
    typed in fullwidth letters and `alice`, `Alice` and `ALICE` are one address."""
    return unicodedata.normalize("NFKC", email.strip()).casefold()


def identity_problem(email: str) -> str | None:
    """Why an (already normalised) address cannot name a new account, or None."""
    for char in email:
        if unicodedata.category(char) in _INVISIBLE_CATEGORIES or char.isspace():
            return "The email contains invisible or control characters."
    for label in email.replace("@", ".").split("."):
        scripts = {script for char in label if (script := _script(char))}
        if len(scripts) > 1:
            return "The email mixes writing systems (e.g. Latin and Cyrillic) in one part."
        letters = [char for char in label if _script(char)]
        if scripts and scripts != {"LATIN"} and all(c in _LATIN_LOOKALIKES for c in letters):
            return "The email imitates Latin letters with look-alike characters."
    return None


def name_problem(name: str) -> str | None:
    """Why a display name is refused: invisible, control or bidirectional characters."""
    for char in name:
        if unicodedata.category(char) in _INVISIBLE_CATEGORIES or (
            char.isspace() and char not in _SPACES_IN_NAMES
        ):
            return "The name contains invisible, control or bidirectional characters."
    return None
