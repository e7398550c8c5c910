"""Bearer-token check for every ``/v1`` route when ``AESERVE_API_TOKEN`` is set.

A router dependency (``create_app`` adds it only when a token is configured), so the OpenAPI
schema shows the bearer security scheme exactly when the service asks for one. ``/healthz``,
``/readyz``, ``/metrics``, the demo page and the docs stay open. The admin routes change what the
service serves: without a token they answer no one (``needs_a_token``).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.errors import ApiError

bearer = HTTPBearer(auto_error=False, description="the service's AESERVE_API_TOKEN")


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> None:
    """401 unless ``Authorization: Bearer <token>`` carries the configured token."""
    expected = request.app.state.settings.api_token.get_secret_value().encode()
    given = credentials.credentials.encode() if credentials is not None else b""
    if not hmac.compare_digest(given, expected):
        raise ApiError(
            401,
            "unauthorized",
            "missing or wrong API token: send the header 'Authorization: Bearer <token>'",
            {"WWW-Authenticate": "Bearer"},
        )


async def needs_a_token(request: Request) -> None:
    """403 for the admin routes while the service has no token: an open service may be used by
    anyone who reaches it, not reloaded by them. Not even from this host: a proxy on the same host
    or a mesh's sidecar makes every client look local. With a token, the token (``require_token``)
    is the check; without one, SIGHUP does what the routes do."""
    if request.app.state.settings.api_token is None:
        raise ApiError(403, "forbidden", "the admin routes need the API token, and this service "
                       "has none: set AESERVE_API_TOKEN, or send SIGHUP to the process to reload")
