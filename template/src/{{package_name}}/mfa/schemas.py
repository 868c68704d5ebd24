"""Request and response bodies of MFA enrolment, removal and the login step."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

from ..auth.schemas import AnyPassword, TokenPair
from ..schemas import InputModel, OutputModel

# A 6-digit TOTP code, or a recovery code (groups of letters and digits, dashes optional).
Code = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=6, max_length=32, pattern=r"^[\w-]+$")
]
ChallengeToken = Annotated[str, StringConstraints(min_length=1, max_length=2048)]


class TotpEnrolment(OutputModel):
    """Shown once: the secret is stored encrypted and never returned again."""

    secret: str
    otpauth_uri: str


class CodeRequest(InputModel):
    code: Code


class RecoveryCodes(OutputModel):
    """Shown once; each code signs in once instead of a TOTP code. `tokens` is the first pair
    of a session that was opened only to enrol (a role that requires MFA)."""

    recovery_codes: list[str]
    tokens: TokenPair | None = None


class MfaDisableRequest(InputModel):
    password: AnyPassword
    code: Code


class MfaVerifyRequest(InputModel):
    mfa_token: ChallengeToken
    code: Code


class MfaChallenge(OutputModel):
    """A login of an account with MFA: no tokens yet; send a code with `mfa_token`."""

    mfa_required: Literal[True] = True
    mfa_token: str
    expires_in: int


class MfaEnrolmentRequired(OutputModel):
    """A login of an account whose role requires MFA and that has none: `enrolment_token` is
    a bearer token accepted only by the TOTP enrolment endpoints."""

    mfa_enrolment_required: Literal[True] = True
    enrolment_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int
