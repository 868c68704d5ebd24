"""Production refusals of settings that are present but weak: guessable keys and tokens, host
wildcards that match other people's domains, and origins no browser should be trusted from."""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Settings

# An estimate of the bits in a secret, from how evenly its characters are spread: 32 times "a" has
# none, `secrets.token_hex(16)` about 120, `secrets.token_urlsafe(48)` about 350.
MIN_SECRET_BITS = 100
MIN_TOKEN_CHARS = 32
# Words, not letters a random token holds by chance: `secrets.token_urlsafe(48)`, which the
# messages recommend, contains "xxx" (any case) about once in 500 tokens; a run of x's is
# refused anyway, as guessable.
PLACEHOLDER_WORDS = ("change", "replace", "example", "secret", "password", "placeholder")
GENERATE = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"


def estimated_bits(value: str) -> float:
    """Shannon entropy of the character distribution, times the length."""
    if not value:
        return 0.0
    counts = Counter(value)
    total = len(value)
    per_char = -sum(n / total * math.log2(n / total) for n in counts.values())
    return per_char * total


def weak_secret(name: str, value: str) -> str | None:
    """Why `value` is not fit to be the secret `name`, or None."""
    lowered = value.lower()
    if len(value) < MIN_TOKEN_CHARS:
        return f"{name} must be at least {MIN_TOKEN_CHARS} characters; {GENERATE}"
    if any(word in lowered for word in PLACEHOLDER_WORDS):
        return f"{name} looks like a placeholder; {GENERATE}"
    if estimated_bits(value) < MIN_SECRET_BITS:
        return f"{name} is guessable (low entropy); {GENERATE}"
    return None


def broad_host_pattern(host: str) -> bool:
    """`*.example.com` names one domain's subdomains; `*.com` or `a.*.example.com` do not."""
    if "*" not in host:
        return False
    labels = host.removeprefix("*.").split(".")
    return not host.startswith("*.") or "*" in host[2:] or len([x for x in labels if x]) < 2


def weak_production_settings(settings: Settings) -> list[str]:
    problems = []
    secret = settings.secret_key.get_secret_value()  # unset, placeholder, short: config.py
    if len(secret.encode()) >= MIN_TOKEN_CHARS and estimated_bits(secret) < MIN_SECRET_BITS:
        problems.append(f"SECRET_KEY is guessable (low entropy); {GENERATE}")
    for index, key in enumerate(settings.previous_secret_keys):
        if reason := weak_secret(f"PREVIOUS_SECRET_KEYS[{index}]", key.get_secret_value()):
            problems.append(reason)
    token = settings.metrics_token
    if token is not None and (reason := weak_secret("METRICS_TOKEN", token.get_secret_value())):
        problems.append(reason)
    broad = [host for host in settings.trusted_hosts if host != "*" and broad_host_pattern(host)]
    if broad:
        problems.append(
            f"TRUSTED_HOSTS entries {broad} match hosts outside your domain; "
            "list exact names or one level of subdomains (*.example.com)"
        )
    if settings.cors_allow_credentials and "null" in settings.cors_origins:
        problems.append(
            "CORS_ORIGINS='null' cannot be combined with CORS_ALLOW_CREDENTIALS: sandboxed "
            "frames and local files send that origin; list the real origins"
        )
    return problems
