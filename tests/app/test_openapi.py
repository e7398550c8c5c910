"""``/openapi.json`` as a generated client reads it: an operation's ``operationId`` becomes a method
name, and a schema's component name a type name. (Its errors and PNG answers: test_main.py; a
fuzz against the real server: test_openapi_fuzz.py.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from openapi_spec_validator import validate
from pydantic import BaseModel, create_model

from app.routers import document_bodies, request_body
from app.routers.images import ImageUpload
from app.routers.latents import DecodeBody, InterpolateBody, InterpolateUpload, SampleBody

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

# each operation's body, by media type: the component it refers to (None: a raw image's bytes)
BODIES = {
    ("denoise", "multipart/form-data"): "ImageUpload", ("denoise", "image/*"): None,
    ("encode", "multipart/form-data"): "ImageUpload", ("encode", "image/*"): None,
    ("score", "multipart/form-data"): "ImageUpload", ("score", "image/*"): None,
    ("decode", "application/json"): "DecodeBody",
    ("sample", "application/json"): "SampleBody",
    ("interpolate", "application/json"): "InterpolateBody",
    ("interpolate", "multipart/form-data"): "InterpolateUpload",
}
BODY_MODELS: dict[str, type[BaseModel]] = {model.__name__: model for model in (
    ImageUpload, DecodeBody, SampleBody, InterpolateBody, InterpolateUpload)}
RAW_IMAGE = {"type": "string", "format": "binary"}


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, op in item.items():
            yield method, path, op


def test_the_document_is_valid_openapi_with_and_without_a_token(
    client: TestClient, app_with: Callable[..., TestClient]
) -> None:
    """What a client generator reads: a valid OpenAPI 3.1 document (its paths, operations,
    parameters, bodies, answers and the token's security scheme; that each body's ``$ref`` names a
    component is the test below)."""
    for schema in (client.get("/openapi.json").json(),
                   app_with(api_token="s3cret").get("/openapi.json").json()):
        assert schema["openapi"].startswith("3.1")
        validate(schema)


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


def test_every_request_body_is_a_named_schema_of_the_model_the_route_reads(
    client: TestClient,
) -> None:
    """The routes read their bodies themselves, after admission (FastAPI sees no body parameter):
    each body is still a component (``$ref``) named after the model the route validates it with,
    the type a generated client names so, not an inline schema named after the path."""
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    bodies: dict[tuple[str, str], str | None] = {}
    for _, _, op in operations(schema):
        body = op.get("requestBody")
        if body is None:
            continue
        assert body["required"] is (op["operationId"] != "sample")  # sample's body may be empty
        for media, content in body["content"].items():
            ref = content["schema"].get("$ref")
            if ref is None:
                assert content["schema"] == RAW_IMAGE, (op["operationId"], media)
                bodies[op["operationId"], media] = None
                continue
            assert ref.startswith("#/components/schemas/"), (op["operationId"], media)
            bodies[op["operationId"], media] = ref.rsplit("/", 1)[-1]
    assert bodies == BODIES
    for name, model in BODY_MODELS.items():
        component = components[name]
        assert set(component["properties"]) == set(model.model_fields), name
        assert set(component.get("required", ())) == {
            field for field, info in model.model_fields.items() if info.is_required()}, name
        if name.endswith("Body"):  # a JSON body: a field the route does not take is a 422
            assert component["additionalProperties"] is False, name
    upload = components["InterpolateUpload"]["properties"]["image"]
    assert (upload["minItems"], upload["maxItems"], upload["items"]) == (2, 2, RAW_IMAGE)


class Inner(BaseModel):
    x: int


class Outer(BaseModel):
    inner: Inner


def bare_app(body: type[BaseModel], answer: type[BaseModel] | None = None) -> FastAPI:
    """An app with one route that reads ``body`` itself, answering ``answer``."""
    app = FastAPI()

    @app.post("/read", response_model=answer, openapi_extra=request_body({"application/json": body}))
    async def read() -> None:
        """Never called: only its OpenAPI document is read."""

    document_bodies(app, (body,))
    return app


def test_a_body_models_nested_models_are_components_beside_it() -> None:
    schema = bare_app(Outer).openapi()
    components = schema["components"]["schemas"]
    content = schema["paths"]["/read"]["post"]["requestBody"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/Outer"}
    assert components["Outer"]["required"] == ["inner"]
    assert components["Outer"]["properties"]["inner"] == {"$ref": "#/components/schemas/Inner"}
    assert set(components["Inner"]["properties"]) == {"x"}


def test_a_body_model_named_as_another_schema_is_an_error_not_an_overwrite() -> None:
    clashing = create_model("Outer", inner=(create_model("Inner", y=(str, ...)), ...))
    with pytest.raises(ValueError, match="two OpenAPI schemas named Inner"):
        bare_app(clashing, answer=Inner).openapi()
