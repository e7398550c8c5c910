"""CORS (``AESERVE_CORS_ORIGINS``): Starlette's middleware, its refusals in the error shape."""

from __future__ import annotations

from fastapi.responses import Response
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware

from app.errors import error_response


class JsonCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight (an origin, method or header not allowed) answered
    in the service's error shape instead of a text/plain 400."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() not in ("content-length", "content-type")}
        allowed = {"origin": "AESERVE_CORS_ORIGINS names the origins allowed",
                   "method": f"methods allowed: {', '.join(self.allow_methods)}",
                   "headers": f"headers allowed: {', '.join(sorted(self.allow_headers))}",
                   "private-network": "this service does not allow private-network access"}
        why = "; ".join(text for what, text in allowed.items() if what in refused.split(", "))
        return error_response(400, "cors_refused", f"this cross-origin request is not allowed: "
                              f"its {refused} ({why})", headers)
