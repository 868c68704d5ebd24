"""Argon2id hashing off the event loop under a concurrency cap, and the password policy."""

from __future__ import annotations

import enum
import functools
import unicodedata
from importlib import resources

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .. import tracing

MIN_LENGTH = 8
MAX_LENGTH = 128

# OWASP's Argon2id baseline: 19 MiB, two passes, one lane. Raising any of these makes every
# stored hash "need rehash", which happens transparently at the user's next login.
TIME_COST = 2
MEMORY_COST_KIB = 19_456
PARALLELISM = 1


@functools.cache
def common_passwords() -> frozenset[str]:
    text = resources.files(__package__).joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(line for line in text.splitlines() if line)


def normalize_password(password: str) -> str:
    """NFKC, so one password typed in two Unicode forms (composed or not, fullwidth or not)
    is one password. Applied before every hash and verification."""
    return unicodedata.normalize("NFKC", password)


def policy_violation(password: str, email: str | None = None) -> str | None:
    """Why `password` is refused, or None: the one policy of register, change, reset and
    `create-admin` (length, the common-password list, not the email, not repetitive)."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        return f"The password must have {MIN_LENGTH} to {MAX_LENGTH} characters."
    folded = normalize_password(password).casefold()
    if folded in common_passwords():
        return "This password is too common; choose another."
    if email:
        address = normalize_password(email).casefold()
        if folded in {address, address.partition("@")[0]}:
            return "The password must not be the email address."
    if len(set(password)) < 3:
        return "The password is too repetitive."
    return None


class Match(enum.Enum):
    NO = "no"
    YES = "yes"
    LEGACY = "legacy"  # the hash was made from the password before normalisation: rehash it


class PasswordService:
    """Hashes and verifies in worker threads; at most `concurrency` hashes run at once.

    Argon2 is deliberately slow and memory-hungry: running it on the event loop would stall
    every request, and running it unbounded would let a login storm exhaust memory.
    """

    def __init__(self, concurrency: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=TIME_COST, memory_cost=MEMORY_COST_KIB, parallelism=PARALLELISM
        )
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        normalized = normalize_password(password)
        with tracing.span("password.hash"):
            return await anyio.to_thread.run_sync(
                self._hasher.hash, normalized, limiter=self._limiter
            )

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self.match(password_hash, password) is not Match.NO

    async def match(self, password_hash: str, password: str) -> Match:
        """Verify the normalised password; a hash stored before normalisation existed is
        tried with the password as typed, and reported as LEGACY so the caller rehashes."""
        normalized = normalize_password(password)

        def _match() -> Match:
            for candidate, verdict in ((normalized, Match.YES), (password, Match.LEGACY)):
                try:
                    if self._hasher.verify(password_hash, candidate):
                        return verdict
                except (VerificationError, InvalidHashError):
                    pass
                if candidate == password:  # already tried: the password was in NFKC
                    break
            return Match.NO

        with tracing.span("password.verify"):
            return await anyio.to_thread.run_sync(_match, limiter=self._limiter)

    async def verify_against_nothing(self, password: str) -> None:
        """Spend the same time as a real verification, so unknown accounts are not revealed."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("rampart-timing-equaliser")
        await self.match(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
