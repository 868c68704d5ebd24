"""`create_app(settings)` assembles the service; nothing here runs at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
from fastapi import Depends, FastAPI
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from . import features, principal_channel, ratelimit_storage
from ._project import DESCRIPTION, PROJECT_NAME
from .apidocs import DOCS_CSP, DOCS_PATH, OPENAPI_PATH
from .apidocs import router as docs_router
from .audit.router import router as audit_router
from .auth.passwords import PasswordService
from .auth.principal_cache import PrincipalCache
from .auth.principal_changes import tracked_sessionmaker
from .auth.router import router as auth_router
from .auth.tokens import AccessTokenCodec
from .config import Settings
from .database import create_engine
from .errors import install_exception_handlers
from .health import router as health
from .mailer import create_mailer
from .metrics import Metrics
from .mfa.router import router as mfa_router
from .middleware.body_limit import BodyLimitMiddleware
from .middleware.compression import GZipMiddleware
from .middleware.proxy import ClientIPMiddleware
from .middleware.rate_limit import RateLimitMiddleware
from .middleware.request_context import RequestContextMiddleware
from .middleware.security_headers import SecurityHeadersMiddleware
from .middleware.server_errors import ServerErrorMiddleware
from .middleware.trusted_hosts import TrustedHostMiddleware
from .observability import configure_logging, metrics_router
from .openapi import install_openapi
from .paths import API_PREFIX, HEALTH_PATHS
from .ratelimit import RateLimiter
from .rbac.router import router as rbac_router
from .telemetry import telemetry_lifespan
from .text import refuse_nul_parameters
from .tracing import TracingMiddleware
from .users.router import router as users_router

# Endpoints that take credentials or send mail: the strict `auth` policy, per client IP.
AUTH_RATE_LIMITED_PATHS = tuple(
    f"{API_PREFIX}/auth/{name}"
    for name in (
        "login",
        "token",
        "register",
        "password/forgot",
        "password/reset",
        "mfa/verify",
        "email/verify",
        "email/verify/resend",
    )
)


def _middleware(settings: Settings, metrics: Metrics, codec: AccessTokenCodec) -> list[Middleware]:
    """Outermost first. Every class is pure ASGI."""
    stack: list[Middleware] = []
    if settings.trusted_proxies:  # without any, there is no forwarding header to believe
        stack.append(Middleware(ClientIPMiddleware, trusted_proxies=settings.trusted_proxies))
    if settings.tracing_on:  # the server span encloses the request's log lines
        stack.append(Middleware(TracingMiddleware))
    stack += [
        Middleware(RequestContextMiddleware, metrics=metrics),
        Middleware(
            SecurityHeadersMiddleware,
            docs_prefix=DOCS_PATH if settings.docs_on else None,
            docs_csp=DOCS_CSP,
        ),
        Middleware(ServerErrorMiddleware),  # inside the headers and the request context
        Middleware(
            TrustedHostMiddleware,
            allowed=settings.trusted_hosts or ["localhost", "127.0.0.1", "::1"],
            # Probes and Prometheus reach the pod by its IP (the metrics need their token).
            exempt_paths=(*HEALTH_PATHS, "/metrics"),
        ),
    ]
    if settings.cors_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_credentials=settings.cors_allow_credentials,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
                expose_headers=[
                    "X-Request-ID",
                    "Retry-After",
                    "RateLimit-Limit",
                    "RateLimit-Remaining",
                    "RateLimit-Reset",
                    "RateLimit-Policy",
                ],
                max_age=600,
            )
        )
    stack += [
        Middleware(GZipMiddleware, minimum_size=1024),
        Middleware(
            BodyLimitMiddleware,
            max_bytes=settings.max_request_body_bytes,
            path_limits=features.body_limits(settings),
        ),
        Middleware(
            RateLimitMiddleware,
            codec=codec,
            prefix=API_PREFIX + "/",
            auth_paths=AUTH_RATE_LIMITED_PATHS,
        ),
    ]
    return stack


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings)
    metrics = Metrics()
    codec = AccessTokenCodec(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        if settings.migrate_on_start:
            from .migrations import upgrade

            await anyio.to_thread.run_sync(upgrade, settings.database_url)
        limiter = RateLimiter(
            settings,
            ratelimit_storage.create_storage(settings, metrics),
            fail_closed=ratelimit_storage.fail_closed(settings),
            metrics=metrics,
        )
        passwords = PasswordService(settings.password_hash_concurrency)
        await passwords.verify_against_nothing("warm-up")  # the first failed login costs the same
        principals = PrincipalCache(
            settings.principal_cache_ttl_seconds, settings.principal_cache_max_entries, metrics
        )
        app.state.engine = engine
        app.state.principal_cache = principals
        app.state.sessionmaker = tracked_sessionmaker(engine, principals)
        app.state.rate_limiter = limiter
        app.state.passwords = passwords
        app.state.mailer = create_mailer(settings)
        try:
            async with AsyncExitStack() as stack:
                await stack.enter_async_context(telemetry_lifespan(app, settings))
                await stack.enter_async_context(
                    principal_channel.invalidation_channel(settings, principals, metrics)
                )
                for feature_lifespan in features.lifespans():
                    await stack.enter_async_context(feature_lifespan(app, settings))
                yield
        finally:
            await limiter.close()
            await engine.dispose()

    app = FastAPI(
        title=PROJECT_NAME,
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=OPENAPI_PATH if settings.docs_on else None,
        middleware=_middleware(settings, metrics, codec),
        # The service traces itself (tracing.py) with a provider of its own: FastAPI's built-in
        # OpenTelemetry, which follows the global providers, stays out (and off the hot path).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        debug=False,  # tracebacks never leave the process; DEBUG only raises log verbosity
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.token_codec = codec
    install_exception_handlers(app)
    install_openapi(app)

    # The probes' routes are the app's own, matched before any included router: FastAPI
    # matches an included router's routes through a layer of its own (docs/performance.md).
    health.add_routes(app)
    # It tries the routers in turn, and their prefixes never overlap: the busiest come first.
    routers = [metrics_router, users_router, auth_router, mfa_router]
    routers += [rbac_router, audit_router, *features.routers()]
    if settings.docs_on:
        routers.append(docs_router)
    # NULs are refused in every parameter (and, by schemas.InputModel, in every body field):
    # a dependency of each router whose routes take parameters. The probes' and Prometheus's
    # routes take none, and skip its cost on the busiest paths there are.
    refuse_nul = [Depends(refuse_nul_parameters)]
    for router in routers:
        parameterless = router is metrics_router
        app.include_router(router, dependencies=None if parameterless else refuse_nul)
    return app
