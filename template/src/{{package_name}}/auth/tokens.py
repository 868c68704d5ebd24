"""Access tokens (short-lived JWTs with key ids) and opaque random tokens stored only as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt

from ..config import Settings
from ..database import utcnow

ALGORITHM = "HS256"
ALLOWED_ALGORITHMS = [ALGORITHM]
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 - a claim value, not a secret
# The MFA step of a login: names the user whose password was right, grants nothing else.
MFA_CHALLENGE_TYPE = "mfa_challenge"
# Access tokens remembered after their signature and claims passed (see AccessTokenCodec.verify).
VERIFIED_CACHE_SIZE = 10_000
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "sub", "jti", "sid", "typ"]
OPAQUE_TOKEN_BYTES = 32  # 256 bits


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired or not meant for this service."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    token_id: str
    expires_at: datetime


def _derive_signing_key(secret: str) -> bytes:
    # A derived key keeps the JWT key separate from any other use of SECRET_KEY.
    return hmac.new(secret.encode(), b"access-token-signing-key", hashlib.sha256).digest()


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


class AccessTokenCodec:
    """Issues and verifies access tokens; previous keys keep verifying during a rotation."""

    def __init__(self, settings: Settings) -> None:
        current = _derive_signing_key(settings.secret_key.get_secret_value())
        self._signing_kid = _key_id(current)
        self._keys = {self._signing_kid: current}
        for previous in settings.previous_secret_keys:
            key = _derive_signing_key(previous.get_secret_value())
            self._keys.setdefault(_key_id(key), key)
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._ttl = timedelta(seconds=settings.access_token_ttl_seconds)
        self._verified: dict[str, AccessClaims] = {}

    @property
    def ttl_seconds(self) -> int:
        return int(self._ttl.total_seconds())

    def issue(
        self,
        user_id: uuid.UUID,
        session_id: uuid.UUID,
        *,
        token_type: str = ACCESS_TOKEN_TYPE,
        ttl: timedelta | None = None,
    ) -> str:
        now = utcnow()
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user_id),
            "sid": str(session_id),
            "jti": secrets.token_hex(16),
            "typ": token_type,
            "iat": now,
            "exp": now + (ttl or self._ttl),
        }
        return jwt.encode(
            claims,
            self._keys[self._signing_kid],
            algorithm=ALGORITHM,
            headers={"kid": self._signing_kid},
        )

    def verify(self, token: str, token_type: str = ACCESS_TOKEN_TYPE) -> AccessClaims:
        """The claims of a valid token. An access token that passed is remembered, exactly as
        sent, until it expires: a guarded request checks it twice (rate limit, then the
        principal), and a client sends the same one for minutes; the keys and the issuer,
        audience and type to check never change while the codec lives."""
        if token_type == ACCESS_TOKEN_TYPE:
            known = self._verified.get(token)
            if known is not None:
                if known.expires_at > utcnow():
                    return known
                del self._verified[token]
                raise InvalidToken("Signature has expired")
            claims = self._decode(token, token_type)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.pop(next(iter(self._verified)))  # the oldest
            self._verified[token] = claims
            return claims
        return self._decode(token, token_type)

    def _decode(self, token: str, token_type: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.get(header.get("kid", ""))
            if key is None or header.get("alg") not in ALLOWED_ALGORITHMS:
                raise InvalidToken("unknown key or algorithm")
            claims = jwt.decode(
                token,
                key,
                algorithms=ALLOWED_ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": REQUIRED_CLAIMS, "verify_iat": True},
            )
            if claims["typ"] != token_type:
                raise InvalidToken(f"not a token of type {token_type}")
            return AccessClaims(
                user_id=uuid.UUID(claims["sub"]),
                session_id=uuid.UUID(claims["sid"]),
                token_id=str(claims["jti"]),
                expires_at=datetime.fromtimestamp(claims["exp"], tz=utcnow().tzinfo),
            )
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as error:
            raise InvalidToken(str(error)) from error


def new_opaque_token() -> str:
    return secrets.token_urlsafe(OPAQUE_TOKEN_BYTES)


def hash_opaque_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
