"""The middleware for unexpected errors: a logged 500 in the error shape, the connection kept; a
client gone and an error mid-answer passed on to the server."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import ClientDisconnect

from app.request_ids import RequestIdMiddleware
from app.unexpected import UnexpectedErrors
from tests.app.helpers import assert_error
from tests.app.test_errors import small_app


def guarded_app() -> FastAPI:
    app = small_app()
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(RequestIdMiddleware)  # as in app.main: outermost
    return app


def test_an_unexpected_error_is_answered_and_not_raised_to_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the test client raises what reaches the server: nothing does, so the server has no reason
    # to close the connection, and the client's next request on it is served
    client = TestClient(guarded_app())
    with caplog.at_level(logging.ERROR, logger="aeserve"):
        response = client.get("/crash")
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in error["message"]
    assert len(response.headers.get_list("x-request-id")) == 1  # the id to cite, once
    assert any(r.exc_info for r in caplog.records if "/crash" in r.getMessage())
    assert client.get("/count", params={"n": 2}).json() == {"n": 2}


def test_a_client_gone_and_an_error_mid_answer_still_reach_the_server() -> None:
    client = TestClient(guarded_app())
    with pytest.raises(ClientDisconnect):
        client.get("/gone")  # the metrics middleware counts it as 499
    with pytest.raises(RuntimeError, match="after the answer began"):
        client.get("/half")  # the server must cut a half-sent answer
