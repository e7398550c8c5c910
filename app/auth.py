"""Bearer-token check for every ``/v1`` route when ``AESERVE_API_TOKEN`` is set.

A router dependency (``create_app`` adds it only when a token is configured), so the OpenAPI
schema shows the bearer security scheme exactly when the service asks for one. ``/healthz``,
``/readyz``, ``/metrics``, the demo page and the docs stay open. The admin routes change what the
service serves: without a token they answer only clients on this host (``local_admin``).
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Address

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


async def local_admin(request: Request) -> None:
    """Without a token, 403 unless the client is on this host (a loopback address): an open
    service may be used by anyone who reaches it, not reloaded by them. With a token, the token
    (``require_token``) is the check."""
    if request.app.state.settings.api_token is not None or is_loopback(request.client):
        return
    raise ApiError(403, "forbidden", "the admin routes answer only clients on this host while the "
                   "service has no API token: set AESERVE_API_TOKEN, or send SIGHUP to the process")


def is_loopback(client: Address | None) -> bool:
    """Whether the peer's address is a loopback one (127.0.0.0/8, ::1, or IPv4-mapped 127.x)."""
    try:
        address = ipaddress.ip_address(client.host) if client is not None else None
    except ValueError:  # not an IP address: a name, or no address at all
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address is not None and address.is_loopback
