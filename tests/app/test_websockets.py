"""WebSocket handshakes: refused with a JSON 404 where the server can answer in HTTP, else closed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from tests.app.helpers import assert_error


@pytest.mark.parametrize("path", ["/", "/v1/models/mnist-dae/denoise", "/healthz", "/no/such/path",
                                  "/static-offline-docs/swagger-ui.css"])
def test_a_websocket_handshake_is_denied_with_a_json_404(client: TestClient, path: str) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect(path):
        pass
    error = assert_error(denied.value, 404, "not_found")
    assert "WebSocket" in error["message"] and path in error["message"]
    assert denied.value.headers["content-type"] == "application/json"
    assert len(denied.value.headers["x-request-id"]) == 32


def test_a_websocket_denial_carries_the_clients_request_id(client: TestClient) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect(
            "/v1/models", headers={"X-Request-ID": "ws-handshake-1"}):
        pass
    assert denied.value.headers["x-request-id"] == "ws-handshake-1"


def test_without_the_denial_extension_the_handshake_is_closed(client: TestClient) -> None:
    """A server that cannot send an HTTP answer to a handshake gets a close, which it answers 403."""
    sent: list[dict[str, Any]] = []
    scope = {"type": "websocket", "path": "/v1/models", "raw_path": b"/v1/models", "root_path": "",
             "query_string": b"", "headers": [(b"host", b"testserver")], "scheme": "ws",
             "server": ("testserver", 80), "client": ("testclient", 50000), "subprotocols": [],
             "extensions": {}}

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(client.app(scope, receive, send))
    assert [m["type"] for m in sent] == ["websocket.close"]
    assert sent[0]["code"] == 1008 and "no WebSocket" in sent[0]["reason"]
