"""Bearer-token check for ``/v1`` routes; an async dependency, so it stays off the threadpool."""

from __future__ import annotations

import hmac

from fastapi import Request

from app.errors import ApiError


async def require_token(request: Request) -> None:
    """Reject the request with 401 unless it carries ``Authorization: Bearer <token>``."""
    token = request.app.state.settings.api_token
    if token is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise ApiError(
            401,
            "unauthorized",
            "missing or wrong API token: send the header 'Authorization: Bearer <token>'",
            {"WWW-Authenticate": "Bearer"},
        )
