"""The API token: every ``/v1`` route behind it when one is set; the admin routes answer only to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import make_settings
from tests.app.helpers import assert_error


@pytest.fixture(scope="module")
def locked(tiny_checkpoints: Path) -> Iterator[TestClient]:
    """An app with an API token, shared by the tests that only send it requests."""
    with TestClient(create_app(make_settings(tiny_checkpoints, api_token="s3cret"))) as client:
        yield client


def test_token_guards_every_v1_route_but_not_health(locked: TestClient) -> None:
    client = locked
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    for path in ("/v1/models", "/v1/models/mnist-vae"):
        error = assert_error(client.get(path), 401, "unauthorized")
        assert "Bearer" in error["message"]
    response = client.post("/v1/models/mnist-vae/sample", json={"n": 1})
    assert_error(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    wrong = {"Authorization": "Bearer s3cre"}
    assert_error(client.get("/v1/models", headers=wrong), 401)
    assert_error(client.get("/v1/models", headers={"Authorization": "Basic s3cret"}), 401)
    good = {"Authorization": "Bearer s3cret"}
    assert client.get("/v1/models", headers=good).status_code == 200
    assert client.post("/v1/models/mnist-vae/sample", json={"n": 1}, headers=good).status_code == 200


def test_unknown_model_behind_the_token_is_401_not_404(locked: TestClient) -> None:
    assert_error(locked.get("/v1/models/nope"), 401)


def test_no_token_configured_means_open(client: TestClient) -> None:
    assert client.get("/v1/models").status_code == 200


@pytest.mark.parametrize("token", [None, "s3cret"], ids=["no-token", "token"])
def test_the_admin_routes_need_a_token_from_every_client(tiny_checkpoints: Path,
                                                         token: str | None) -> None:
    """Anyone who reaches an open service may use it, not reload it: not even a client that looks
    local, as every client does behind a proxy on the same host or a mesh's sidecar."""
    app = create_app(make_settings(tiny_checkpoints, api_token=token))
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    for peer in (("203.0.113.7", 40000), ("127.0.0.1", 40000)):
        with TestClient(app, client=peer, headers=auth) as client:
            answer = client.post("/v1/admin/reload")
            if token is None:
                error = assert_error(answer, 403, "forbidden")
                assert "AESERVE_API_TOKEN" in error["message"] and "SIGHUP" in error["message"]
                assert client.get("/v1/models").status_code == 200  # the rest stays open
            else:
                assert answer.status_code == 200, answer.text
                assert set(answer.json()["unchanged"]) == {"mnist-dae", "mnist-vae"}
