"""``/openapi.json`` as a generated client reads it: an operation's ``operationId`` becomes a method
name, and a schema's component name a type name. (Its errors and PNG answers: test_main.py; a
fuzz against the real server: test_openapi_fuzz.py.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi.testclient import TestClient

OPERATIONS = {
    ("post", "/v1/models/{name}/denoise"): "denoise",
    ("post", "/v1/models/{name}/encode"): "encode",
    ("post", "/v1/models/{name}/score"): "score",
    ("post", "/v1/models/{name}/decode"): "decode",
    ("post", "/v1/models/{name}/sample"): "sample",
    ("post", "/v1/models/{name}/interpolate"): "interpolate",
    ("get", "/v1/models"): "list_models",
    ("get", "/v1/models/{name}"): "get_model",
    ("post", "/v1/admin/reload"): "reload",
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("get", "/metrics"): "metrics",
}


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, op in item.items():
            yield method, path, op


def test_every_operation_id_is_its_routes_name_and_unique(
    client: TestClient, app_with: Callable[..., TestClient]
) -> None:
    """``denoise``, not FastAPI's ``denoise_v1_models__name__denoise_post``: with or without a token
    (whose dependency the routers get when the app includes them)."""
    for schema in (client.get("/openapi.json").json(),
                   app_with(api_token="s3cret").get("/openapi.json").json()):
        ids = {(method, path): op["operationId"] for method, path, op in operations(schema)}
        assert ids == OPERATIONS
        assert len(set(ids.values())) == len(ids)


def test_every_json_answer_is_a_named_schema(client: TestClient) -> None:
    """A JSON answer's schema is a component (``$ref``): a model's card too, a photo denoiser's or
    another's, not an inline union that a generator names after the path."""
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    for method, path, op in operations(schema):
        for status, answer in op["responses"].items():
            media = answer.get("content", {}).get("application/json")
            if media is None:
                continue
            ref = media["schema"].get("$ref", "")
            assert ref.startswith("#/components/schemas/"), (method, path, status, media["schema"])
            assert ref.rsplit("/", 1)[-1] in components
    card = components["AnyModelCard"]["anyOf"]
    assert {ref["$ref"].rsplit("/", 1)[-1] for ref in card} == {"ModelCard", "PhotoCard"}
    assert not [name for name in components if name.startswith(("Response", "Body_"))]


def test_every_operation_documents_the_500_answer_in_the_error_shape(client: TestClient) -> None:
    """An error the service did not expect is answered 500 ``internal_error`` in the error shape,
    on any route (test_unexpected.py): documented, a generated client reads its ``code`` too."""
    schema = client.get("/openapi.json").json()
    for method, path, op in operations(schema):
        answer = op["responses"].get("500", {}).get("content", {}).get("application/json", {})
        assert answer.get("schema") == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
