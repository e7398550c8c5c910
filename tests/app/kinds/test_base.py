"""What every kind shares (``ServedModel``): a request's ticket, refused on arrival when the model's
work budget is full, and the work factor a client reads to tell whether an image fits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

import app.routers.images as image_router
from app.main import create_app
from app.runtime import onnx_available
from app.settings import Settings
from tests.app.helpers import assert_error, files, image_bytes

DAE = "/v1/models/mnist-dae"


def test_a_model_whose_work_budget_is_full_answers_503_before_reading_the_body(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    dae = client.app.state.registry.models["mnist-dae"]  # type: ignore[attr-defined]
    read: list[Any] = []
    read_images = image_router.read_images

    def recorded(*args: Any, **kwargs: Any) -> Any:
        read.append(args)
        return read_images(*args, **kwargs)

    monkeypatch.setattr(image_router, "read_images", recorded)
    monkeypatch.setattr(dae.budget, "used", dae.budget.limit)  # as if full of queued work
    response = client.post(f"{DAE}/denoise", files=files(image_bytes()))
    error = assert_error(response, 503, "overloaded")
    assert int(response.headers["retry-after"]) >= 1 and "AESERVE_QUEUE_WORK" in error["message"]
    assert read == []  # refused on arrival: the upload was never read
    monkeypatch.undo()
    assert client.post(f"{DAE}/denoise", files=files(image_bytes())).status_code == 200


def test_an_image_the_work_factor_says_fits_is_not_refused_for_its_work(
    tiny_photo_checkpoint: Path,
) -> None:
    """GET /v1/models's denoise_work_per_pixel is a bound, not a sample: at sizes about the work
    limit (aspect ratios 1:1 to 16:9 either way, 70 to 110 % of the pixels that fit), pixels
    times it is never below the work admission counts, and the largest image it says fits is
    within the limit."""
    settings = Settings(checkpoint_dir=tiny_photo_checkpoint, torch_threads=1, max_work=8)
    with TestClient(create_app(settings)) as client:
        listing = client.get("/v1/models").json()
        served = client.app.state.registry.models["photo-denoiser"]
    (factors,) = [m["denoise_work_per_pixel"] for m in listing["models"]]
    cap = listing["limits"]["max_work_pixels"]
    rng = np.random.default_rng(0)
    for name, bands in (("gray", 1), ("colour", 3)):
        factor = factors[name]
        for _ in range(300):
            aspect, share = rng.uniform(1.0, 16 / 9), rng.uniform(0.7, 1.1)
            width = round((cap / factor * share * aspect) ** 0.5)
            height = round(cap / factor * share / width)
            for w, h in ((width, height), (height, width)):
                assert served.denoise_cost(w, h, bands) <= w * h * factor, (name, w, h)
                if w * h * factor <= cap:
                    assert served.denoise_cost(w, h, bands) <= cap


@pytest.mark.skipif(not onnx_available(), reason="onnxruntime/onnx not installed")
def test_onnx_runtime_falls_back_to_torch_on_an_export_failure_but_a_bug_propagates(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With AESERVE_RUNTIME=auto, a graph the ONNX exporter cannot take serves on torch with a
    warning; a graph function with a bug stops the load instead of hiding behind that warning."""
    dae = client.app.state.registry.models["mnist-dae"]  # type: ignore[attr-defined]
    assert dae.settings.runtime == "auto" and dae.runtime.name == "onnxruntime"
    z = torch.zeros(2, dae.latent_dim)
    monkeypatch.setattr(dae, "examples", lambda: {"decode": z})

    def unexportable(x: torch.Tensor) -> torch.Tensor:
        return torch.special.bessel_j0(x)  # no ONNX operator for it

    monkeypatch.setattr(dae, "graphs", lambda: {"decode": unexportable})
    with caplog.at_level(logging.WARNING, logger="aeserve"):
        runtime = dae._build_runtime()
    assert runtime.name == "torch" and "ONNX Runtime not used" in caplog.text
    assert "UnsupportedOperatorError" in caplog.text

    def buggy(x: torch.Tensor) -> torch.Tensor:
        return x.no_such_method()  # type: ignore[attr-defined]

    monkeypatch.setattr(dae, "graphs", lambda: {"decode": buggy})
    with pytest.raises(AttributeError, match="no_such_method"):
        dae._build_runtime()
