"""MFA endpoints: TOTP enrolment, confirmation and removal, and the second step of a login."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status

from ..auth.dependencies import (
    PasswordServiceDep,
    Principal,
    RateLimiterDep,
    SettingsDep,
    TokenCodecDep,
    load_user,
)
from ..auth.schemas import TokenPair
from ..database import SessionDep
from ..paths import API_PREFIX
from ..rbac.dependencies import Guard
from ..rbac.permissions import Perm
from ..rbac.routing import GuardedRoute
from ..requests import RequestMetaDep
from . import service
from .schemas import CodeRequest, MfaDisableRequest, MfaVerifyRequest, RecoveryCodes, TotpEnrolment

router = APIRouter(prefix=f"{API_PREFIX}/auth/mfa", tags=["auth"], route_class=GuardedRoute)

# Also admits a session that may only enrol (a role requires MFA and the account has none).
Enrolling = Guard(Perm.ACCOUNT_UPDATE, while_enrolling_mfa=True)


@router.post("/totp", response_model=TotpEnrolment)
async def start_totp(
    principal: Annotated[Principal, Enrolling],
    session: SessionDep,
    settings: SettingsDep,
    meta: RequestMetaDep,
) -> TotpEnrolment:
    """Start TOTP enrolment: a secret and its `otpauth://` URI for an authenticator app. The
    secret is shown only here; starting again replaces an unconfirmed one."""
    user = await load_user(session, principal)
    secret, uri = await service.start_enrolment(session, settings, meta, user)
    return TotpEnrolment(secret=secret, otpauth_uri=uri)


@router.post("/totp/confirm", response_model=RecoveryCodes)
async def confirm_totp(
    body: CodeRequest,
    principal: Annotated[Principal, Enrolling],
    session: SessionDep,
    settings: SettingsDep,
    codec: TokenCodecDep,
    limiter: RateLimiterDep,
    meta: RequestMetaDep,
) -> RecoveryCodes:
    """Turn TOTP on with a current code; answers single-use recovery codes, shown only here.
    Every other session of the account ends."""
    codes, tokens = await service.confirm_enrolment(
        session, settings, codec, limiter, meta, principal, body.code
    )
    return RecoveryCodes(recovery_codes=codes, tokens=tokens)


@router.delete("/totp", status_code=status.HTTP_204_NO_CONTENT)
async def disable_totp(
    body: MfaDisableRequest,
    principal: Annotated[Principal, Guard(Perm.ACCOUNT_UPDATE)],
    session: SessionDep,
    settings: SettingsDep,
    passwords: PasswordServiceDep,
    limiter: RateLimiterDep,
    meta: RequestMetaDep,
) -> None:
    """Turn MFA off with the password and a code; refused while a role requires MFA."""
    await service.disable(
        session,
        settings,
        passwords,
        limiter,
        meta,
        await load_user(session, principal),
        password=body.password,
        code=body.code,
    )


@router.post("/verify", response_model=TokenPair)
async def verify(
    body: MfaVerifyRequest,
    session: SessionDep,
    settings: SettingsDep,
    codec: TokenCodecDep,
    limiter: RateLimiterDep,
    meta: RequestMetaDep,
) -> TokenPair:
    """The second step of a login: the `mfa_token` it answered and a TOTP or recovery code."""
    return await service.verify_login(
        session, settings, codec, limiter, meta, mfa_token=body.mfa_token, code=body.code
    )
