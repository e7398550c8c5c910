"""``app.client``: the token as the service reads it, and errors as the service words them."""

from __future__ import annotations

import httpx
import pytest

from app.client import AeserveError, Client, bearer_headers


def test_the_token_loses_the_whitespace_around_it_as_the_service_reads_it() -> None:
    assert bearer_headers("s3cret\n") == {"Authorization": "Bearer s3cret"}
    assert bearer_headers("  ") == {} and bearer_headers(None) == {}


def test_a_token_no_header_can_carry_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="bearer token cannot carry") as refused:
        Client(token="tok\nsecret-part")
    assert "secret-part" not in str(refused.value)


def test_an_error_answer_carries_its_code_message_and_retry_after() -> None:
    client = Client()
    answer = httpx.Response(503, headers={"Retry-After": "3"},
                            json={"error": {"code": "overloaded", "message": "busy"}})
    with pytest.raises(AeserveError) as error:
        client._check(answer)
    assert (error.value.status, error.value.code, error.value.message) == (503, "overloaded", "busy")
    assert error.value.retry_after == 3.0
    proxy = httpx.Response(502, text="<html>Bad Gateway</html>")  # not the service's answer
    with pytest.raises(AeserveError) as error:
        client._check(proxy)
    assert (error.value.code, error.value.retry_after) == ("http_error", None)
    client.close()


def test_a_service_that_cannot_be_reached_is_not_ready() -> None:
    with Client("http://127.0.0.1:9", timeout=5) as client:  # the discard port: nothing listens
        assert client.ready() is False
