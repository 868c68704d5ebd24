"""Argon2id hashing off the event loop under a concurrency cap, and the password policy."""

from __future__ import annotations

import functools
from importlib import resources

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

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


def policy_violation(password: str, email: str | None = None) -> str | None:
    """Why `password` is refused, or None. Length is checked by the schema."""
    lowered = password.lower()
    if lowered in common_passwords():
        return "This password is too common; choose another."
    if email and lowered == email.lower():
        return "The password must not be the email address."
    if len(set(password)) < 3:
        return "The password is too repetitive."
    return None


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
        return await anyio.to_thread.run_sync(self._hasher.hash, password, limiter=self._limiter)

    async def verify(self, password_hash: str, password: str) -> bool:
        def _verify() -> bool:
            try:
                return self._hasher.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        return await anyio.to_thread.run_sync(_verify, limiter=self._limiter)

    async def verify_against_nothing(self, password: str) -> None:
        """Spend the same time as a real verification, so unknown accounts are not revealed."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("rampart-timing-equaliser")
        await self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
