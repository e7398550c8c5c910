"""Bearer-token check for every ``/v1`` route, as a pure ASGI middleware.

A middleware rather than a per-router dependency: it covers any ``/v1`` route added later, it
answers before the body is read, and it costs no dependency resolution on the hot routes.
``/healthz``, ``/readyz``, ``/metrics`` and the docs stay open.
"""

from __future__ import annotations

import hmac

from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import error_response

PROTECTED_PREFIX = "/v1"


def token_matches(authorization: str, expected: bytes) -> bool:
    """``Authorization: Bearer <token>`` with the right token (constant-time comparison)."""
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)


class TokenAuthMiddleware:
    """401 for ``/v1`` requests without the right bearer token; a no-op when no token is set."""

    def __init__(self, app: ASGIApp, token: SecretStr | None) -> None:
        self.app = app
        self.expected = token.get_secret_value().encode() if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.expected is None
            or scope["type"] != "http"
            or not scope["path"].startswith(PROTECTED_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        header = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        if token_matches(header.decode("latin-1"), self.expected):
            await self.app(scope, receive, send)
            return
        response = error_response(
            401,
            "unauthorized",
            "missing or wrong API token: send the header 'Authorization: Bearer <token>'",
            {"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)
