"""The shared dependencies: the model named in the path, and whether it can do the operation."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from app.deps import lookup, model_for
from app.errors import ApiError
from app.kinds import ServedModel


class Model:
    name, kind, operations = "digits", "dae", ("denoise", "encode")

    supports = ServedModel.supports
    unsupported = ServedModel.unsupported  # the one 422 wording, as the real models give it


def request_with(**models: Any) -> Any:
    registry = SimpleNamespace(models=models)
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(registry=registry)))


def test_lookup_gives_the_named_model() -> None:
    model = Model()
    assert lookup(request_with(digits=model), "digits") is model


def test_an_unknown_model_is_404_naming_the_ones_there_are() -> None:
    with pytest.raises(ApiError) as err:
        lookup(request_with(digits=Model(), faces=Model()), "cats")
    assert (err.value.status, err.value.code) == (404, "unknown_model")
    assert "'cats'" in err.value.message and "digits, faces" in err.value.message
    with pytest.raises(ApiError, match="none loaded"):
        lookup(request_with(), "cats")


def test_an_operation_the_model_lacks_is_422_naming_what_it_supports() -> None:
    model = Model()
    assert model_for(request_with(digits=model), "digits", "encode") is model
    with pytest.raises(ApiError) as err:
        model_for(request_with(digits=model), "digits", "sample")
    assert (err.value.status, err.value.code) == (422, "unsupported_operation")
    assert "cannot sample" in err.value.message and "denoise, encode" in err.value.message
