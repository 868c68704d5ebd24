"""Apply the rate-limit policies before routing: the strict `auth` policy per client IP on the
credential endpoints, the `default` policy per user (or per IP when anonymous) everywhere else."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..auth.tokens import AccessTokenCodec, InvalidToken
from ..errors import ProblemError, problem
from ..ratelimit import RateLimiter


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        codec: AccessTokenCodec,
        prefix: str,
        auth_paths: Iterable[str],
    ) -> None:
        self.app = app
        self.codec = codec
        self.prefix = prefix
        self.auth_paths = frozenset(auth_paths)

    def _caller_key(self, scope: Scope) -> str:
        """The user id of a valid bearer token, else the client IP. A forged token cannot pick
        someone else's bucket: only a verified signature yields a user key."""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token:
                    try:
                        return "user:" + str(self.codec.verify(token.strip()).user_id)
                    except InvalidToken:
                        pass
                break
        client = scope.get("client")
        return "ip:" + (client[0] if client else "unknown")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        exempt = not path.startswith(self.prefix) or scope.get("method") == "OPTIONS"
        if scope["type"] != "http" or exempt:
            await self.app(scope, receive, send)
            return
        limiter: RateLimiter = scope["app"].state.rate_limiter
        if path in self.auth_paths:
            client = scope.get("client")
            policy, key = limiter.auth, "ip:" + (client[0] if client else "unknown")
        else:
            policy, key = limiter.default, self._caller_key(scope)
        try:
            decision = await limiter.hit(policy, key)
        except ProblemError as error:  # fail-closed storage outage
            await problem(error.status, error.code, error.detail, headers=error.headers)(
                scope, receive, send
            )
            return
        headers = decision.headers()
        if not decision.allowed:
            response = problem(429, "rate_limited", "Too many requests; retry later.")
            response.raw_headers.extend(headers)
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
