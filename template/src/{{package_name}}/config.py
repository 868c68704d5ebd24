"""Settings read from the environment, and the production checks that refuse unsafe ones."""

from __future__ import annotations

import json
import secrets
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from . import dialect, features, principal_channel, ratelimit_storage
from ._project import PROJECT_SLUG
from .rbac.permissions import ADMIN_ROLE
from .weak_settings import weak_production_settings

PLACEHOLDER_SECRETS = frozenset({"", "secret", "dev", "development", "password", "test"})
PLACEHOLDER_PREFIXES = ("change", "replace", "example", "your-", "dev-")
MIN_SECRET_BYTES = 32


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


def _split_list(value: object) -> object:
    """Accept a JSON list or a comma-separated string for list settings."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


CommaList = Annotated[list[str], NoDecode]


class Settings(
    features.FeatureSettings,
    ratelimit_storage.StorageSettings,
    principal_channel.ChannelSettings,
    BaseSettings,
):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    environment: Environment = Environment.DEVELOPMENT
    debug: bool = False
    log_level: str = "INFO"
    log_json: bool | None = None  # default: JSON everywhere but development

    database_url: str = dialect.DEFAULT_DATABASE_URL
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0)
    db_pool_recycle_seconds: int = Field(default=1800, ge=-1)
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    auto_migrate: bool | None = None  # default: on in development only

    secret_key: SecretStr = SecretStr("")
    previous_secret_keys: Annotated[list[SecretStr], NoDecode] = []
    jwt_issuer: str = PROJECT_SLUG
    jwt_audience: str = f"{PROJECT_SLUG}-api"
    access_token_ttl_seconds: int = Field(default=600, ge=300, le=900)
    refresh_token_ttl_days: int = Field(default=14, ge=1, le=90)
    password_reset_ttl_minutes: int = Field(default=15, ge=5, le=60)
    password_hash_concurrency: int = Field(default=2, ge=1, le=64)
    registration_enabled: bool = True
    # Account security (credential throttles, refresh grace window, reset mails, audit budget).
    refresh_reuse_grace_seconds: int = Field(default=10, ge=0, le=60)
    session_max_age_days: int = Field(default=30, ge=1, le=365)
    # Who a session's bearer is, kept in memory for at most this long (0 turns the cache off);
    # every change invalidates it at once (docs: "The principal cache").
    principal_cache_ttl_seconds: float = Field(default=5.0, ge=0, le=60)
    principal_cache_max_entries: int = Field(default=10_000, ge=1)
    # Account features (docs/security.md): roles that must use MFA (default: `admin` in
    # production, none elsewhere; `[]` for none), the MFA login step's lifetime, and what an
    # account may do before its email is verified (default: `none` in production, `full` else).
    mfa_required_roles: CommaList | None = None
    mfa_challenge_ttl_seconds: int = Field(default=300, ge=60, le=900)
    unverified_account_access: Literal["full", "none"] | None = None
    email_verification_ttl_hours: int = Field(default=48, ge=1, le=168)

    cors_origins: CommaList = []
    cors_allow_credentials: bool = False
    trusted_hosts: CommaList = []
    trusted_proxies: CommaList = []
    docs_enabled: bool | None = None  # default: on everywhere but production
    max_request_body_bytes: int = Field(default=1_048_576, ge=1024)
    readiness_timeout_seconds: float = Field(default=1.0, gt=0, le=10)
    shutdown_grace_seconds: int = Field(default=20, ge=1, le=300)
    # The `serve` command's HTTP server (server.py): request line plus headers at most this
    # many bytes, sent within this many seconds; idle keep-alive; connections + requests at once.
    server_max_header_bytes: int = Field(default=65_536, ge=8_192, le=1_048_576)
    server_head_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    server_keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    server_limit_concurrency: int = Field(default=1000, ge=10)

    rate_limit_default: str = "120/minute"
    rate_limit_auth: str = "60/minute"
    rate_limit_login_failures: str = "5/15 minutes"
    rate_limit_login_failures_per_client: str = "50/15 minutes"
    rate_limit_login_failures_per_account: str = "50/hour"
    rate_limit_password_reset_mails: str = "3/hour"  # noqa: S105 - a rate, not a secret
    rate_limit_verification_mails: str = "3/hour"
    rate_limit_audit_denials: str = "30/minute"
    rate_limit_enabled: bool = True
    rate_limit_metrics: str = "30/minute"  # per client IP, counted before the token check

    metrics_token: SecretStr | None = None
    # Tracing and error reporting (docs: README "Observability"): each starts only when its
    # endpoint is set, and its SDK is not even imported otherwise. The other OTEL_* variables
    # (OTEL_TRACES_SAMPLER, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS, ...) are read
    # by the OpenTelemetry SDK itself from the process environment.
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = PROJECT_SLUG
    otel_sdk_disabled: bool = False
    sentry_dsn: SecretStr | None = None
    sentry_environment: str | None = None  # default: ENVIRONMENT

    public_base_url: str = "http://localhost:8000"
    mail_from: str = f"no-reply@{PROJECT_SLUG}.local"
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_timeout_seconds: float = 10.0

    @field_validator(
        "cors_origins", "trusted_hosts", "trusted_proxies", "mfa_required_roles", mode="before"
    )
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("previous_secret_keys", mode="before")
    @classmethod
    def _secret_list(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return dialect.normalize_database_url(value)

    @field_validator(
        "rate_limit_default",
        "rate_limit_auth",
        "rate_limit_login_failures",
        "rate_limit_login_failures_per_client",
        "rate_limit_login_failures_per_account",
        "rate_limit_password_reset_mails",
        "rate_limit_verification_mails",
        "rate_limit_audit_denials",
        "rate_limit_metrics",
    )
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse

        parse(value)  # raises ValueError with the library's own message
        return value

    @model_validator(mode="before")
    @classmethod
    def _ephemeral_secret_outside_production(cls, data: Any) -> Any:
        """Development and tests may omit SECRET_KEY: a random one per process is used, so
        tokens never verify across restarts but can never be forged from a known key."""
        if isinstance(data, dict):
            production = str(data.get("environment", "")).lower() == Environment.PRODUCTION
            if not production and not data.get("secret_key"):
                data["secret_key"] = secrets.token_urlsafe(48)
        return data

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        if self.environment is not Environment.PRODUCTION:
            return self
        problems = self.feature_production_problems()
        if self.debug:
            problems.append("DEBUG must be false in production")
        secret = self.secret_key.get_secret_value()
        lowered = secret.strip().lower()
        if lowered in PLACEHOLDER_SECRETS or lowered.startswith(PLACEHOLDER_PREFIXES):
            problems.append("SECRET_KEY is unset or a placeholder")
        elif len(secret.encode()) < MIN_SECRET_BYTES:
            problems.append(f"SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes")
        if "*" in self.cors_origins and self.cors_allow_credentials:
            problems.append("CORS_ORIGINS='*' cannot be combined with CORS_ALLOW_CREDENTIALS")
        if self.docs_enabled and "docs_enabled" not in self.model_fields_set:
            problems.append("DOCS_ENABLED must be set explicitly to publish docs in production")
        if not self.trusted_hosts or "*" in self.trusted_hosts:
            problems.append("TRUSTED_HOSTS must list the host names the service answers to")
        problems += weak_production_settings(self)
        if problems:
            raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self

    @property
    def is_development(self) -> bool:
        return self.environment is Environment.DEVELOPMENT

    @property
    def docs_on(self) -> bool:
        if self.docs_enabled is None:
            return self.environment is not Environment.PRODUCTION
        return self.docs_enabled

    @property
    def json_logs(self) -> bool:
        return not self.is_development if self.log_json is None else self.log_json

    @property
    def tracing_on(self) -> bool:
        return bool(self.otel_exporter_otlp_endpoint) and not self.otel_sdk_disabled

    @property
    def mfa_roles(self) -> frozenset[str]:
        if self.mfa_required_roles is None:
            production = self.environment is Environment.PRODUCTION
            return frozenset({ADMIN_ROLE}) if production else frozenset()
        return frozenset(self.mfa_required_roles)

    @property
    def unverified_accounts_may_log_in(self) -> bool:
        if self.unverified_account_access is None:
            return self.environment is not Environment.PRODUCTION
        return self.unverified_account_access == "full"

    @property
    def migrate_on_start(self) -> bool:
        return self.is_development if self.auto_migrate is None else self.auto_migrate
