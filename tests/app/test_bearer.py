"""app/bearer.py: the one rule for what a bearer token may hold, shared by the service's settings
and the client (RFC 6750's b64token)."""

from __future__ import annotations

import pytest

from app.bearer import is_bearer_token


@pytest.mark.parametrize("token", [
    "s3cret", "a-b.c_d~e+f/g", "abc=", "abc==", "QUJDRA==", "0123456789", "x",
])
def test_the_rfc_6750_characters_make_a_token(token: str) -> None:
    assert is_bearer_token(token)


@pytest.mark.parametrize("token", [
    "", "=", "==abc", "a=b", "has space", "tab\there", "line\nbreak", "quote\"d", "comma,", "semi;",
    "caf\u00e9", "colon:", "at@",
])
def test_anything_else_is_refused(token: str) -> None:
    assert not is_bearer_token(token)
