"""What the server (``app.protocol``) tells the app of a request whose connection ends before its
answer, beyond ASGI's ``http.disconnect``: the scope extension that says when and why, and the
scope key of a status the server answered with itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

# an ASGI scope extension (app/protocol.py offers it): ``{"callbacks": [...]}``, a list the request
# appends to, each called when the client disconnects before the answer is complete; the server
# sets ``CLIENT_GONE`` in it then (for a request that looks later), and ``BODY_TIMED_OUT`` when it
# closed the connection because the body was too slow
DISCONNECT_EXTENSION = "aeserve.disconnect"
CLIENT_GONE = "client_gone"
BODY_TIMED_OUT = "body_timed_out"
# the status the server answered the request with itself, cutting the connection (a malformed or
# too slow body): the app sees a disconnect, and counts and logs the request under that status, not
# 499
SERVER_ANSWER_KEY = "aeserve.server_answer"


def disconnect_extension(scope: Mapping[str, object]) -> dict[str, Any] | None:
    """The request's ``aeserve.disconnect`` extension, when its server offers one."""
    extensions = cast(dict[str, Any], scope.get("extensions") or {})
    return cast(dict[str, Any] | None, extensions.get(DISCONNECT_EXTENSION))
