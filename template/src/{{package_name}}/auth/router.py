"""Authentication endpoints: register, login, refresh, logout, sessions, password change and
reset, email verification."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import ValidationError

from ..database import SessionDep
from ..errors import Forbidden
from ..mfa import service as mfa_service
from ..mfa.schemas import MfaChallenge, MfaEnrolmentRequired
from ..paths import API_PREFIX
from ..rbac.dependencies import Guard
from ..rbac.permissions import Perm
from ..rbac.routing import GuardedRoute
from ..requests import RequestMetaDep
from ..users import service as users_service
from ..users.schemas import UserOut
from ..users.service import to_out
from . import service, sessions, verification
from .dependencies import (
    MailerDep,
    PasswordServiceDep,
    Principal,
    RateLimiterDep,
    SettingsDep,
    TokenCodecDep,
    load_user,
)
from .schemas import (
    LoginRequest,
    PasswordChangeRequest,
    PasswordForgotRequest,
    PasswordResetRequest,
    RefreshRequest,
    RegisterRequest,
    SessionInfo,
    TokenPair,
    VerificationRequest,
    VerificationResendRequest,
)

router = APIRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"], route_class=GuardedRoute)


AccountUpdate = Guard(Perm.ACCOUNT_UPDATE)


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserOut)
async def register(
    body: RegisterRequest,
    session: SessionDep,
    passwords: PasswordServiceDep,
    settings: SettingsDep,
    mailer: MailerDep,
    background: BackgroundTasks,
    meta: RequestMetaDep,
) -> UserOut:
    """Create an account and mail it a verification token (sent after the response)."""
    if not settings.registration_enabled:
        raise Forbidden("Registration is closed.")
    user = await service.register(
        session,
        passwords,
        meta,
        email=body.email,
        password=body.password,
        full_name=body.full_name,
    )
    background.add_task(mailer.send, await verification.issue(session, settings, user))
    await session.commit()
    return to_out(await users_service.get(session, user.id))


# Tokens; or, for an account with MFA, the step that asks for a code; or, for a role that
# requires MFA on an account without it, a token that can only enrol.
LoginOutcome = TokenPair | MfaChallenge | MfaEnrolmentRequired


class Login:
    """What both login endpoints need, injected once: check the credentials, open a session."""

    def __init__(
        self,
        session: SessionDep,
        passwords: PasswordServiceDep,
        limiter: RateLimiterDep,
        settings: SettingsDep,
        codec: TokenCodecDep,
        meta: RequestMetaDep,
    ) -> None:
        self.session, self.passwords, self.limiter = session, passwords, limiter
        self.settings, self.codec, self.meta = settings, codec, meta

    async def __call__(self, credentials: LoginRequest) -> LoginOutcome:
        user = await service.authenticate(
            self.session,
            self.passwords,
            self.limiter,
            self.meta,
            email=credentials.email,
            password=credentials.password,
        )
        verification.require_verified(self.settings, user)
        return await mfa_service.after_password(
            self.session, self.settings, self.codec, self.meta, user
        )


LoginDep = Annotated[Login, Depends()]


@router.post("/token", response_model=LoginOutcome)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], log_in: LoginDep
) -> LoginOutcome:
    """OAuth2 password flow (form fields `username` = email, `password`)."""
    try:  # the same limits as the JSON login, applied to the form fields
        credentials = LoginRequest(email=form.username, password=form.password)
    except ValidationError as error:
        raise RequestValidationError(error.errors(include_input=False)) from None
    return await log_in(credentials)


@router.post("/login", response_model=LoginOutcome)
async def login(body: LoginRequest, log_in: LoginDep) -> LoginOutcome:
    return await log_in(body)


@router.post("/refresh", response_model=TokenPair)
async def refresh(
    body: RefreshRequest,
    session: SessionDep,
    settings: SettingsDep,
    codec: TokenCodecDep,
    meta: RequestMetaDep,
) -> TokenPair:
    return await service.rotate(session, settings, codec, meta, body.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshRequest, session: SessionDep, meta: RequestMetaDep) -> None:
    await service.logout(session, meta, body.refresh_token)


@router.post("/logout-all", status_code=status.HTTP_204_NO_CONTENT)
async def logout_all(
    principal: Annotated[Principal, AccountUpdate],
    session: SessionDep,
    meta: RequestMetaDep,
) -> None:
    await service.logout_all(session, meta, principal.user_id)


@router.get("/sessions", response_model=list[SessionInfo])
async def list_sessions(
    principal: Annotated[Principal, Guard(Perm.ACCOUNT_READ)],
    session: SessionDep,
    settings: SettingsDep,
) -> list[SessionInfo]:
    """Your live sessions, newest first; `current` marks the one making this request."""
    return await sessions.live_sessions(session, settings, principal.user_id, principal.session_id)


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def end_session(
    session_id: uuid.UUID,
    principal: Annotated[Principal, AccountUpdate],
    session: SessionDep,
    meta: RequestMetaDep,
) -> None:
    """End one of your sessions: its refresh token and access tokens stop working at once."""
    await sessions.end_own_session(session, meta, principal.user_id, session_id)


@router.post("/password/change", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    body: PasswordChangeRequest,
    principal: Annotated[Principal, AccountUpdate],
    session: SessionDep,
    passwords: PasswordServiceDep,
    limiter: RateLimiterDep,
    meta: RequestMetaDep,
) -> None:
    """Change the password and end every session of the account, this one included. The
    current password is throttled and audited like a login."""
    await service.change_password(
        session,
        passwords,
        limiter,
        meta,
        await load_user(session, principal),
        current_password=body.current_password,
        new_password=body.new_password,
    )


@router.post("/password/forgot", status_code=status.HTTP_202_ACCEPTED)
async def forgot_password(
    body: PasswordForgotRequest,
    session: SessionDep,
    settings: SettingsDep,
    limiter: RateLimiterDep,
    mailer: MailerDep,
    background: BackgroundTasks,
    meta: RequestMetaDep,
) -> dict[str, str]:
    """Always 202, whether or not the account exists; the email is sent after the response."""
    message = await service.request_password_reset(session, settings, limiter, meta, body.email)
    if message is not None:
        background.add_task(mailer.send, message)
    return {"status": "accepted"}


@router.post("/password/reset", status_code=status.HTTP_204_NO_CONTENT)
async def reset_password(
    body: PasswordResetRequest,
    session: SessionDep,
    passwords: PasswordServiceDep,
    meta: RequestMetaDep,
) -> None:
    await service.reset_password(
        session, passwords, meta, token=body.token, new_password=body.new_password
    )


@router.post("/email/verify", status_code=status.HTTP_204_NO_CONTENT)
async def verify_email(
    body: VerificationRequest, session: SessionDep, meta: RequestMetaDep
) -> None:
    """Confirm the account's email with the token mailed to it (single use, expiring)."""
    await verification.verify(session, meta, body.token)


@router.post("/email/verify/resend", status_code=status.HTTP_202_ACCEPTED)
async def resend_verification(
    body: VerificationResendRequest,
    session: SessionDep,
    settings: SettingsDep,
    limiter: RateLimiterDep,
    mailer: MailerDep,
    background: BackgroundTasks,
    meta: RequestMetaDep,
) -> dict[str, str]:
    """Always 202, whether or not the account exists or is verified; a new token voids the
    previous ones."""
    message = await verification.request_again(session, settings, limiter, meta, body.email)
    if message is not None:
        background.add_task(mailer.send, message)
    return {"status": "accepted"}
