"""Request and response bodies of the authentication endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, EmailStr, Field, StringConstraints, model_validator

from ..schemas import InputModel, OutputModel
from ..users.models import EMAIL_MAX_LENGTH, FULL_NAME_MAX_LENGTH
from .identity import identity_problem, name_problem, normalize_email
from .passwords import MAX_LENGTH, MIN_LENGTH, policy_violation
from .tokens import OPAQUE_TOKEN_BYTES


def _new_identity(email: str) -> str:
    problem = identity_problem(normalize_email(email))
    if problem:
        raise ValueError(problem)
    return email


def _clean_name(name: str) -> str:
    problem = name_problem(name)
    if problem:
        raise ValueError(problem)
    return name


# Any address, for lookups (login, forgot); the service normalises it.
Email = Annotated[EmailStr, Field(max_length=EMAIL_MAX_LENGTH)]
# An address that names a new account: no invisible, mixed-script or look-alike characters.
NewEmail = Annotated[Email, AfterValidator(_new_identity)]
FullName = Annotated[str, Field(max_length=FULL_NAME_MAX_LENGTH), AfterValidator(_clean_name)]
# Length only: a login must accept any password that was valid when it was set.
AnyPassword = Annotated[str, Field(min_length=1, max_length=MAX_LENGTH)]
NewPassword = Annotated[str, Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)]
OpaqueToken = Annotated[
    str, StringConstraints(min_length=OPAQUE_TOKEN_BYTES, max_length=128, pattern=r"^[\w-]+$")
]


def _check_policy(password: str, email: str | None = None) -> None:
    reason = policy_violation(password, email)
    if reason:
        raise ValueError(reason)


class RegisterRequest(InputModel):
    email: NewEmail
    password: NewPassword
    full_name: FullName = ""

    @model_validator(mode="after")
    def _policy(self) -> Self:
        _check_policy(self.password, self.email)
        return self


class LoginRequest(InputModel):
    email: Email
    password: AnyPassword


class RefreshRequest(InputModel):
    refresh_token: OpaqueToken


class PasswordChangeRequest(InputModel):
    current_password: AnyPassword
    new_password: NewPassword

    @model_validator(mode="after")
    def _policy(self) -> Self:
        _check_policy(self.new_password)  # the service checks it again against the email
        if self.new_password == self.current_password:
            raise ValueError("The new password must differ from the current one.")
        return self


class PasswordForgotRequest(InputModel):
    email: Email


class PasswordResetRequest(InputModel):
    token: OpaqueToken
    new_password: NewPassword

    @model_validator(mode="after")
    def _policy(self) -> Self:
        _check_policy(self.new_password)
        return self


class VerificationRequest(InputModel):
    token: OpaqueToken


class VerificationResendRequest(InputModel):
    email: Email


class TokenPair(OutputModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int


class SessionInfo(OutputModel):
    """A live login of the caller; `current` marks the one this request belongs to."""

    id: uuid.UUID
    created_at: datetime
    expires_at: datetime  # the absolute end, however often it is refreshed
    client_ip: str | None
    user_agent: str | None
    mfa: bool
    current: bool
