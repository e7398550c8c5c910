"""What a bearer token may hold (RFC 6750: letters, digits and ``- . _ ~ + /``, then ``=`` at the
end): the service takes no other as its token, and the client sends no other. Standard library
only, so that the client imports nothing of the service."""

from __future__ import annotations

import re

TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def is_bearer_token(text: str) -> bool:
    return TOKEN.fullmatch(text) is not None
