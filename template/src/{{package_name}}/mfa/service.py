"""The rules of MFA: enrolment, the login step, throttled single-use codes, and removal."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from datetime import datetime, timedelta

import pyotp
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .._project import PROJECT_NAME
from ..audit import service as audit
from ..auth import service as auth_service
from ..auth.dependencies import Principal
from ..auth.models import AuthSession
from ..auth.passwords import PasswordService
from ..auth.principal_changes import NOTED, note_users
from ..auth.schemas import TokenPair
from ..auth.tokens import MFA_CHALLENGE_TYPE, AccessTokenCodec
from ..auth.tokens import InvalidToken as InvalidJwt
from ..config import Settings
from ..database import utcnow
from ..errors import Conflict, TooManyRequests, Unauthorized
from ..ratelimit import Policy, RateLimiter
from ..rbac import service as rbac_service
from ..requests import RequestMeta
from ..users.models import User
from .models import RecoveryCode, TotpCredential
from .schemas import MfaChallenge, MfaEnrolmentRequired

RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_GROUPS = 5  # of five base32 characters: 125 random bits per code
TOTP_CODE = re.compile(r"\d{6}")
BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


class InvalidMfaCode(Unauthorized):
    code = "invalid_mfa_code"
    detail = "The code is invalid, expired or already used."


class InvalidMfaToken(Unauthorized):
    code = "invalid_mfa_token"
    detail = "The MFA step expired or is invalid; log in again."


class MfaAlreadyEnabled(Conflict):
    code = "mfa_already_enabled"
    detail = "TOTP is already enabled on this account."


class MfaNotEnrolled(Conflict):
    code = "mfa_not_enrolled"
    detail = "There is no TOTP enrolment to act on; start one first."


class MfaRequiredByRole(Conflict):
    code = "mfa_required_by_role"
    detail = "One of your roles requires multi-factor authentication; it cannot be removed."
    audit_action = "auth.mfa_disable_refused"


def _fernet_key(secret: str) -> bytes:
    # A derived key keeps this use of SECRET_KEY apart from signing tokens.
    digest = hmac.new(secret.encode(), b"totp-secret-encryption-key", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest)


def _secret_box(settings: Settings) -> MultiFernet:
    """Encrypts with SECRET_KEY; PREVIOUS_SECRET_KEYS keep decrypting during a rotation."""
    keys = [settings.secret_key, *settings.previous_secret_keys]
    return MultiFernet([Fernet(_fernet_key(key.get_secret_value())) for key in keys])


def _decrypt(settings: Settings, credential: TotpCredential) -> str | None:
    try:
        return _secret_box(settings).decrypt(credential.secret_ciphertext.encode()).decode()
    except InvalidToken:  # encrypted under a key no longer configured: only recovery codes work
        return None


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step (RFC 6238, 30 s) whose code this is, allowing one step of clock drift."""
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _recovery_hash(user_id: uuid.UUID, code: str) -> str:
    # Codes carry 125 random bits (over the 112 that ASVS 6.5.2 asks of a fast hash); the user
    # id keeps equal codes of two accounts apart.
    normalised = code.replace("-", "").lower()
    return hashlib.sha256(f"{user_id}:{normalised}".encode()).hexdigest()


def _new_recovery_code() -> str:
    letters = [secrets.choice(BASE32) for _ in range(5 * RECOVERY_CODE_GROUPS)]
    return "-".join("".join(letters[i : i + 5]) for i in range(0, len(letters), 5))


def _charges(limiter: RateLimiter, user_id: uuid.UUID, client_ip: str) -> list[tuple[Policy, str]]:
    """What one code check costs: the same three limits as a password check, on the account's
    MFA counters (a password guess does not use up the owner's code attempts, nor the reverse)."""
    account = f"mfa:{user_id}"
    return [
        (limiter.login_failures, f"{account}:{client_ip}"),
        (limiter.login_failures_per_account, account),
        (limiter.login_failures_per_client, client_ip),
    ]


async def _consume(
    session: AsyncSession, settings: Settings, credential: TotpCredential, code: str
) -> str | None:
    """Spend a TOTP code or a recovery code; one conditional UPDATE decides concurrent uses.
    Returns how the user proved themselves, or None."""
    user_id = credential.user_id
    if TOTP_CODE.fullmatch(code):
        secret = _decrypt(settings, credential)
        step = _matching_step(secret, code, utcnow()) if secret else None
        if step is None:
            return None
        claimed = await session.execute(
            update(TotpCredential)
            .where(
                TotpCredential.user_id == user_id,
                or_(TotpCredential.last_used_step.is_(None), TotpCredential.last_used_step < step),
            )
            .values(last_used_step=step)
        )
        return "totp" if claimed.rowcount == 1 else None  # type: ignore[attr-defined]
    if credential.confirmed_at is None:
        return None
    claimed = await session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash == _recovery_hash(user_id, code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )
    return "recovery_code" if claimed.rowcount == 1 else None  # type: ignore[attr-defined]


async def check_code(
    session: AsyncSession,
    settings: Settings,
    limiter: RateLimiter,
    meta: RequestMeta,
    credential: TotpCredential,
    code: str,
    *,
    purpose: str,
) -> str:
    """Count the attempt before the check (atomically, like a password), then spend the code.
    A refused code is audited and committed; an accepted one is spent in the caller's
    transaction, which the caller commits."""
    user_id = credential.user_id
    charges = _charges(limiter, user_id, meta.client_ip)
    refusal = await limiter.reserve(charges)
    if refusal is not None:
        raise TooManyRequests(refusal.reset_after, "Too many failed attempts; retry later.")
    method = await _consume(session, settings, credential, code)
    if method is None:
        await session.rollback()  # expires `credential`
        audit.record(
            session,
            meta,
            "auth.mfa_check",
            outcome="failure",
            actor_id=user_id,
            subject=str(user_id),
            purpose=purpose,
        )
        await session.commit()
        raise InvalidMfaCode()
    for policy, key in charges:
        await limiter.refund(policy, key)
    return method


async def confirmed_credential(session: AsyncSession, user_id: uuid.UUID) -> TotpCredential | None:
    credential = await session.get(TotpCredential, user_id)
    return credential if credential is not None and credential.confirmed_at else None


async def after_password(
    session: AsyncSession,
    settings: Settings,
    codec: AccessTokenCodec,
    meta: RequestMeta,
    user: User,
) -> TokenPair | MfaChallenge | MfaEnrolmentRequired:
    """What a login answers once the password is right: tokens, the MFA step, or (a role that
    requires MFA, none enrolled) a session that can only enrol."""
    if await confirmed_credential(session, user.id):
        await session.commit()  # the audited password step and any rehash
        ttl = timedelta(seconds=settings.mfa_challenge_ttl_seconds)
        token = codec.issue(user.id, uuid.uuid4(), token_type=MFA_CHALLENGE_TYPE, ttl=ttl)
        return MfaChallenge(mfa_token=token, expires_in=int(ttl.total_seconds()))
    if set(await rbac_service.role_names(session, user.id)) & settings.mfa_roles:
        auth_session = await auth_service.open_session(session, meta, user, mfa_verified=False)
        await session.commit()
        return MfaEnrolmentRequired(
            enrolment_token=codec.issue(user.id, auth_session.id), expires_in=codec.ttl_seconds
        )
    return await auth_service.start_session(session, settings, codec, meta, user)


async def verify_login(
    session: AsyncSession,
    settings: Settings,
    codec: AccessTokenCodec,
    limiter: RateLimiter,
    meta: RequestMeta,
    *,
    mfa_token: str,
    code: str,
) -> TokenPair:
    """The second step of a login: a code (TOTP or recovery) for the user the token names."""
    try:
        claims = codec.verify(mfa_token, MFA_CHALLENGE_TYPE)
    except InvalidJwt:
        raise InvalidMfaToken() from None
    user = await session.get(User, claims.user_id)
    credential = await confirmed_credential(session, claims.user_id)
    if user is None or not user.is_active or credential is None:
        raise InvalidMfaToken()
    method = await check_code(session, settings, limiter, meta, credential, code, purpose="login")
    audit.record(session, meta, "auth.mfa_verified", actor_id=user.id, method=method)
    return await auth_service.start_session(session, settings, codec, meta, user, mfa_verified=True)


async def start_enrolment(
    session: AsyncSession, settings: Settings, meta: RequestMeta, user: User
) -> tuple[str, str]:
    """A new secret (replacing an unconfirmed one) and its `otpauth://` URI."""
    credential = await session.get(TotpCredential, user.id)
    if credential is not None and credential.confirmed_at is not None:
        raise MfaAlreadyEnabled()
    secret = pyotp.random_base32()
    ciphertext = _secret_box(settings).encrypt(secret.encode()).decode()
    if credential is None:
        session.add(TotpCredential(user_id=user.id, secret_ciphertext=ciphertext))
    else:
        credential.secret_ciphertext, credential.last_used_step = ciphertext, None
        credential.created_at = utcnow()
    audit.record(session, meta, "auth.mfa_enrolment_started", actor_id=user.id)
    try:
        await session.commit()
    except IntegrityError:  # a concurrent start inserted first
        await session.rollback()
        raise Conflict("An enrolment was started at the same time; start again.") from None
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=PROJECT_NAME)
    return secret, uri


async def confirm_enrolment(
    session: AsyncSession,
    settings: Settings,
    codec: AccessTokenCodec,
    limiter: RateLimiter,
    meta: RequestMeta,
    principal: Principal,
    code: str,
) -> tuple[list[str], TokenPair | None]:
    """Turn TOTP on with a code from the authenticator; answer fresh recovery codes. This
    session counts as MFA-verified; every other session of the account ends."""
    user_id = principal.user_id
    credential = await session.get(TotpCredential, user_id)
    if credential is None:
        raise MfaNotEnrolled()
    if credential.confirmed_at is not None:
        raise MfaAlreadyEnabled()
    if not TOTP_CODE.fullmatch(code):
        raise InvalidMfaCode("Confirm enrolment with a 6-digit code from your authenticator.")
    await check_code(session, settings, limiter, meta, credential, code, purpose="enrolment")
    confirmed = await session.execute(
        update(TotpCredential)
        .where(TotpCredential.user_id == user_id, TotpCredential.confirmed_at.is_(None))
        .values(confirmed_at=utcnow())
    )
    if confirmed.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise MfaAlreadyEnabled()
    codes = await _replace_recovery_codes(session, user_id)
    note_users(session, [user_id])
    await session.execute(
        update(AuthSession).where(AuthSession.id == principal.session_id).values(mfa_verified=True),
        execution_options=NOTED,
    )
    await auth_service.revoke_other_sessions(
        session, user_id, principal.session_id, reason="mfa_enabled"
    )
    audit.record(session, meta, "auth.mfa_enabled", actor_id=user_id, subject=str(user_id))
    if not principal.mfa_pending:
        await session.commit()
        return codes, None
    auth_session = await session.get(AuthSession, principal.session_id)
    assert auth_session is not None
    return codes, await auth_service.complete_session(session, settings, codec, auth_session)


async def _replace_recovery_codes(session: AsyncSession, user_id: uuid.UUID) -> list[str]:
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    session.add_all(
        RecoveryCode(user_id=user_id, code_hash=_recovery_hash(user_id, code)) for code in codes
    )
    return codes


async def disable(
    session: AsyncSession,
    settings: Settings,
    passwords: PasswordService,
    limiter: RateLimiter,
    meta: RequestMeta,
    user: User,
    *,
    password: str,
    code: str,
) -> None:
    """Turn MFA off with the password and a code (TOTP or recovery), both throttled; refused
    while one of the user's roles requires MFA."""
    await auth_service.reauthenticate(
        session, passwords, limiter, meta, user, password, purpose="mfa_disable"
    )
    credential = await confirmed_credential(session, user.id)
    if credential is None:
        raise MfaNotEnrolled()
    required = set(await rbac_service.role_names(session, user.id)) & settings.mfa_roles
    if required:
        raise MfaRequiredByRole(audit_details={"roles": sorted(required)})
    await check_code(session, settings, limiter, meta, credential, code, purpose="mfa_disable")
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    await session.execute(delete(TotpCredential).where(TotpCredential.user_id == user.id))
    audit.record(session, meta, "auth.mfa_disabled", actor_id=user.id, subject=str(user.id))
    await session.commit()
