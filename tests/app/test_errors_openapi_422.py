"""The OpenAPI description lists a 422 only where one can be answered, in the service's error
shape: not FastAPI's own ``Validation Error``, which it adds to every route with a parameter even
where none can fail (a path's model name, the Accept header)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

NO_422 = [("get", "/v1/models/{name}"), ("get", "/v1/models"), ("get", "/healthz"),
          ("get", "/readyz"), ("post", "/v1/admin/reload")]


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    spec: dict[str, Any] = answer.json()
    return spec


@pytest.mark.parametrize(("method", "path"), NO_422)
def test_a_route_whose_parameters_cannot_fail_documents_no_422(
    spec: dict[str, Any], method: str, path: str
) -> None:
    assert "422" not in spec["paths"][path][method]["responses"]


def test_every_documented_422_is_the_services_error_shape(spec: dict[str, Any]) -> None:
    documented = {(method, path): operation["responses"]["422"]
                  for path, item in spec["paths"].items() for method, operation in item.items()
                  if "422" in operation["responses"]}
    assert ("post", "/v1/models/{name}/denoise") in documented  # where one can happen, it stays
    for where, answer in documented.items():
        schema = answer["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}, where
    assert not {"HTTPValidationError", "ValidationError"} & set(spec["components"]["schemas"])


def test_the_card_answers_no_422_for_any_name(client: TestClient) -> None:
    for name in ["mnist-dae", "no-such-model", "%20", "a" * 300]:
        assert client.get(f"/v1/models/{name}").status_code in (200, 404)
