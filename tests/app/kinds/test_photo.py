"""The photo denoiser: any size and mode back, alpha kept, sigma in and out; the cost of thin
strips, EXIF, and tiles that stop when the ticket fails."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app import images
from app.admission import timeout_error
from app.errors import ApiError
from app.main import create_app
from app.settings import Settings
from model.checkpoint import load_checkpoint
from model.photo.inference import denoise_image, work_pixels
from model.photo.pair import load_photo, pair
from tests.app.helpers import (
    assert_error,
    decode_png,
    exif_rotated,
    files,
    image_bytes,
    png_of,
    stored_pixels,
    upright_pattern,
)
from tests.model.photo.synthetic import save_photo_net

URL = "/v1/models/photo-denoiser/denoise"


@pytest.fixture(scope="module")
def photo_client(tiny_photo_checkpoint: Path) -> Iterator[TestClient]:
    settings = Settings(checkpoint_dir=tiny_photo_checkpoint, torch_threads=1)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
@pytest.mark.parametrize("size", [(37, 23), (1, 1), (1, 40), (40, 1), (300, 170)])
def test_answer_keeps_size_and_mode(photo_client: TestClient, mode: str, size: tuple[int, int]) -> None:
    response = photo_client.post(URL, files=files(image_bytes(size=size, mode=mode)))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    out = decode_png(response.content)
    assert (out.size, out.mode) == (size, mode)
    if (size[0] - 6) * (size[1] - 6) > 49 and min(size) >= 7:  # 7x7 patches: > 49
        assert float(response.headers["X-Noise-Sigma"]) >= 0.0
    else:  # too small to estimate: the σ used is unknown, not 0
        assert "X-Noise-Sigma" not in response.headers


def test_a_photo_too_small_to_estimate_reports_no_sigma_unless_given(photo_client: TestClient) -> None:
    data = image_bytes(size=(13, 13), mode="RGB", seed=5)
    answer = photo_client.post(URL, files=files(data), headers={"Accept": "application/json"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["images"][0]["noise_sigma"] is None
    given = photo_client.post(URL, files=files(data), params={"sigma": 30})
    assert given.headers["X-Noise-Sigma"] == "30.000"


@pytest.mark.parametrize("accept", ["image/png", "application/json"])
def test_sigma_minus_zero_is_answered_as_zero(photo_client: TestClient, accept: str) -> None:
    # -0 passes ge=0; it came back as "X-Noise-Sigma: -0.000" and "noise_sigma": -0.0
    answer = photo_client.post(URL, files=files(image_bytes(size=(13, 13), mode="RGB", seed=5)),
                               params={"sigma": "-0"}, headers={"Accept": accept})
    assert answer.status_code == 200, answer.text
    if accept == "image/png":
        assert answer.headers["X-Noise-Sigma"] == "0.000"
    else:
        assert str(answer.json()["images"][0]["noise_sigma"]) == "0.0"


def test_alpha_is_kept_unchanged(photo_client: TestClient) -> None:
    data = image_bytes(size=(45, 31), mode="RGBA", seed=3)
    out = decode_png(photo_client.post(URL, files=files(data)).content)
    original = Image.open(io.BytesIO(data))
    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(original.getchannel("A")))


def test_gray_answer_is_the_in_process_result(
    photo_client: TestClient, tiny_photo_checkpoint: Path
) -> None:
    data = image_bytes(size=(50, 30), mode="L", seed=4)
    response = photo_client.post(URL, files=files(data))
    out = np.asarray(decode_png(response.content), dtype=np.int16)
    model = load_checkpoint(tiny_photo_checkpoint / "photo-denoiser").model
    x = torch.from_numpy(np.asarray(Image.open(io.BytesIO(data)), dtype=np.float32) / 255.0)
    y, est = denoise_image(model, x[None, None])
    expected = np.round(y[0, 0].numpy() * 255.0).astype(np.int16)
    assert decode_png(response.content).mode == "L"
    assert int(np.abs(out - expected).max()) <= 1
    assert abs(float(response.headers["X-Noise-Sigma"]) - est) < 0.01


def test_colour_answer_is_the_in_process_colour_result(
    tiny_photo_checkpoint: Path, tmp_path: Path
) -> None:
    """RGB reaches the model as one RGB image (its opponent-colour path), not as three gray planes.

    The tiny checkpoint is close to the identity (its last layer starts at zero), where both paths
    agree; perturbed weights make a model whose colour and per-plane answers differ.
    """
    from model.checkpoint import save_checkpoint

    ck = load_checkpoint(tiny_photo_checkpoint / "photo-denoiser")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in ck.model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
    save_checkpoint(tmp_path / "photo-denoiser", ck.model, ck.config)
    model = load_checkpoint(tmp_path / "photo-denoiser").model
    data = image_bytes(size=(40, 28), mode="RGB", seed=5)
    rgb = np.asarray(Image.open(io.BytesIO(data)), dtype=np.float32) / 255.0
    x = torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None]
    y, est = denoise_image(model, x)
    expected = np.round(y[0].numpy().transpose(1, 2, 0) * 255.0).astype(np.int16)
    planes = [denoise_image(model, x[:, i : i + 1])[0] for i in range(3)]
    per_plane = np.round(torch.cat(planes, 1)[0].numpy().transpose(1, 2, 0) * 255.0)
    assert np.abs(per_plane - expected).max() > 2  # the two paths really differ for this model

    settings = Settings(checkpoint_dir=tmp_path, torch_threads=1)
    with TestClient(create_app(settings)) as client:
        response = client.post(URL, files=files(data))
    out = np.asarray(decode_png(response.content), dtype=np.int16)
    assert int(np.abs(out - expected).max()) <= 1
    assert abs(float(response.headers["X-Noise-Sigma"]) - est) < 0.01


def test_the_network_is_told_at_most_the_top_of_its_training_range(
    tiny_photo_checkpoint: Path, tmp_path: Path
) -> None:
    """A checkpoint trained on sigma up to 30: the card says so, and a sigma of 40 is denoised as 30
    (the answer still says 40, the sigma the client sent). Perturbed weights make the level matter:
    the tiny checkpoint is close to the identity."""
    from model.checkpoint import save_checkpoint

    ck = load_checkpoint(tiny_photo_checkpoint / "photo-denoiser")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in ck.model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
    ck.config.noise.sigma_max = 30 / 255
    save_checkpoint(tmp_path / "photo-denoiser", ck.model, ck.config)
    data = image_bytes(size=(40, 28), mode="L", seed=6)
    with TestClient(create_app(Settings(checkpoint_dir=tmp_path, torch_threads=1))) as client:
        assert client.get("/v1/models/photo-denoiser").json()["sigma_cap"] == pytest.approx(30.0)
        answers = {s: client.post(URL, params={"sigma": s}, files=files(data)) for s in (20, 30, 40)}
    assert answers[40].headers["X-Noise-Sigma"] == "40.000"
    assert answers[40].content == answers[30].content
    assert answers[20].content != answers[30].content  # below the cap, the level matters


def test_raw_body_and_sigma_query(photo_client: TestClient) -> None:
    response = photo_client.post(
        URL, params={"sigma": 25}, content=image_bytes(size=(33, 20)),
        headers={"content-type": "image/png"},
    )
    assert response.status_code == 200, response.text
    assert decode_png(response.content).size == (33, 20)
    assert "X-Noise-Sigma" in response.headers


def test_json_form_carries_the_estimated_sigma(photo_client: TestClient) -> None:
    response = photo_client.post(
        URL, files=files(image_bytes(size=(20, 30), mode="RGB")),
        headers={"accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    item = response.json()["images"][0]
    assert (item["width"], item["height"], item["mode"]) == (20, 30, "RGB")
    assert item["noise_sigma"] >= 0.0
    assert decode_png(base64.b64decode(item["png"])).size == (20, 30)


def test_the_card_and_the_list_say_it_takes_any_size_and_a_sigma(photo_client: TestClient) -> None:
    card = photo_client.get("/v1/models/photo-denoiser").json()
    (summary,) = photo_client.get("/v1/models").json()["models"]
    assert (card["any_size"], card["takes_sigma"]) == (summary["any_size"], summary["takes_sigma"]) \
        == (True, True)


def test_resize_is_ignored_and_the_api_schema_says_so(photo_client: TestClient) -> None:
    """A model of any size has nothing to resize: resize=true answers what resize=false does (in
    the image's own size), and the denoise query's schema tells a client as much."""
    upload = files(image_bytes((37, 23), "RGB"))
    plain = photo_client.post(URL, files=upload, params={"sigma": 25})
    resized = photo_client.post(URL, files=upload, params={"sigma": 25, "resize": "true"})
    assert resized.status_code == plain.status_code == 200
    assert resized.content == plain.content and decode_png(resized.content).size == (37, 23)
    schema = photo_client.get("/openapi.json").json()
    (resize,) = [p for p in schema["paths"]["/v1/models/{name}/denoise"]["post"]["parameters"]
                 if p["name"] == "resize"]
    assert "a model of any size ignores it" in resize["description"]


def test_negative_sigma_is_refused(photo_client: TestClient) -> None:
    response = photo_client.post(URL, params={"sigma": -1}, files=files(image_bytes()))
    assert_error(response, 422)


def photo_model(client: TestClient) -> Any:
    return client.app.state.registry.models["photo-denoiser"]  # type: ignore[attr-defined]


def strip(width: int, height: int = 1) -> bytes:
    """A real flat gray PNG, 1 pixel high unless told: a few KB on the wire, many pixels decoded."""
    buf = io.BytesIO()
    Image.new("L", (width, height), color=128).save(buf, format="PNG")
    return buf.getvalue()


def test_a_thin_strip_over_the_work_cap_is_413_naming_cost_and_cap_before_decoding(
    photo_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[Any] = []
    monkeypatch.setattr(images, "decode", lambda *a: decoded.append(a))
    data = strip(65_535, 64)  # the longest side there may be, 4.2 megapixels
    assert len(data) < 20_000
    error = assert_error(photo_client.post(URL, files=files(data)), 413, "too_much_work")
    cost = 65_535 * 64 + work_pixels(photo_model(photo_client).model, 64, 65_535, 1)
    assert f"costs {cost / 1e6:.3g} megapixel" in error["message"]
    assert "the limit is 8 (AESERVE_MAX_WORK)" in error["message"]
    assert decoded == []


def test_a_thin_strip_within_the_cap_is_cheap_and_answered(photo_client: TestClient) -> None:
    width = 16_384
    work = work_pixels(photo_model(photo_client).model, 1, width, 1)
    assert work <= 16 * width  # the tiles follow the strip: not a square tile per pixel
    response = photo_client.post(URL, files=files(strip(width)))
    assert response.status_code == 200, response.text
    assert decode_png(response.content).size == (width, 1)


def test_thirteen_tall_strips_cost_what_their_convolutions_run_over_and_are_413(
    photo_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[Any] = []
    monkeypatch.setattr(images, "decode", lambda *a: decoded.append(a))
    data = strip(1, 65_535)  # 1 wide: the network's coarsest levels see a 1-pixel-wide map
    assert len(data) < 1_000
    error = assert_error(photo_client.post(URL, files=files(*[data] * 13)), 413, "too_much_work")
    one = 65_535 + work_pixels(photo_model(photo_client).model, 65_535, 1, 1)
    assert f"costs {13 * one / 1e6:.3g} megapixel" in error["message"]
    assert one > 0.9e6  # counted as the pixels of the tiles alone, 13 of them fitted in 8
    assert decoded == []


@pytest.mark.parametrize(("data", "on_loop"), [
    (strip(400, 400), False),  # 160,000 pixels in under a KB: decoded and encoded off the loop
    (image_bytes(size=(32, 32)), True),  # a few hundred pixels stay on the loop
], ids=["flat-400x400", "32x32"])
def test_a_photo_is_decoded_and_encoded_off_the_loop_by_its_pixels(
    photo_client: TestClient, monkeypatch: pytest.MonkeyPatch, data: bytes, on_loop: bool
) -> None:
    loop = photo_client.portal.call(threading.get_ident)  # type: ignore[union-attr]
    threads: list[int] = []

    def recorder(original: Any) -> Any:
        def recorded(*args: Any) -> Any:
            threads.append(threading.get_ident())
            return original(*args)

        return recorded

    monkeypatch.setattr(images, "decode", recorder(images.decode))
    monkeypatch.setattr(images, "to_planes", recorder(images.to_planes))
    monkeypatch.setattr(images, "encode_png", recorder(images.encode_png))
    response = photo_client.post(URL, files=files(data))
    assert response.status_code == 200, response.text
    assert len(threads) == 3  # decode, planes, encode
    assert all((thread == loop) == on_loop for thread in threads)


def test_a_sideways_jpeg_is_denoised_upright_in_the_rotated_size(photo_client: TestClient) -> None:
    jpeg = exif_rotated(upright_pattern(24, 40))
    upright = np.rot90(stored_pixels(jpeg), k=-1)  # the stored pixels, turned as EXIF says
    answer = photo_client.post(URL, params={"sigma": 10}, files=files(jpeg))
    assert answer.status_code == 200, answer.text
    out = decode_png(answer.content)
    assert out.size == (24, 40)
    expected = photo_client.post(URL, params={"sigma": 10}, files=files(png_of(upright)))
    assert np.array_equal(np.asarray(out), np.asarray(decode_png(expected.content)))


def test_the_ticket_is_checked_before_every_tile_and_stops_the_rest(photo_client: TestClient) -> None:
    served = photo_model(photo_client)
    checks: list[int] = []

    def check() -> None:
        checks.append(1)
        if len(checks) == 3:
            raise timeout_error(1.0)

    x = torch.zeros(1, 1, 1200, 1200, dtype=torch.uint8)  # nine tiles or more
    with pytest.raises(ApiError) as stopped:
        served._denoise((x, 10.0), check)
    assert stopped.value.code == "timeout" and len(checks) == 3


def test_a_photo_past_its_deadline_is_503_timeout(tiny_photo_checkpoint: Path) -> None:
    settings = Settings(checkpoint_dir=tiny_photo_checkpoint, torch_threads=1, request_timeout_s=1e-6)
    with TestClient(create_app(settings)) as client:
        response = client.post(URL, files=files(image_bytes(size=(300, 200))))
    assert_error(response, 503, "timeout")
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize("sigma", ["nan", "inf", "-inf", "-1", "255.5", "1e300", "loud"])
def test_sigma_must_be_finite_and_within_0_to_255(photo_client: TestClient, sigma: str) -> None:
    response = photo_client.post(URL, params={"sigma": sigma}, files=files(image_bytes()))
    assert "sigma" in assert_error(response, 422, "invalid_request")["message"]
    assert photo_client.post(URL, params={"sigma": 255}, files=files(image_bytes())).status_code == 200


def test_a_paired_checkpoint_serves_rgb_on_its_colour_network_in_one_pass(tmp_path: Path) -> None:
    gray = save_photo_net(tmp_path / "checkpoints" / "photo-denoiser", 1, 0)
    pair(gray, save_photo_net(tmp_path / "colour-run", 3, 1))
    model = load_photo(gray).model
    settings = Settings(checkpoint_dir=tmp_path / "checkpoints", torch_threads=1)
    with TestClient(create_app(settings)) as client:
        card = client.get("/v1/models/photo-denoiser").json()
        assert card["colour_sha256"] == load_photo(gray / "colour").sha256
        served = photo_model(client)
        for mode, net in (("RGB", model.colour), ("L", model.gray)):
            data = image_bytes(size=(40, 28), mode=mode, seed=5)
            arr = np.asarray(Image.open(io.BytesIO(data)), dtype=np.float32) / 255.0
            x = torch.from_numpy(arr.transpose(2, 0, 1).copy() if arr.ndim == 3 else arr[None].copy())[None]
            expected = np.round(denoise_image(net, x)[0][0].numpy() * 255.0)
            out = np.asarray(decode_png(client.post(URL, files=files(data)).content), dtype=np.int16)
            out = out.transpose(2, 0, 1) if out.ndim == 3 else out[None]
            assert int(np.abs(out - expected).max()) <= 1
        # the work admitted for a colour photo is one pass, as for a gray one of its size
        rgb, gray_probe = (images.probe(image_bytes(size=(300, 170), mode=m, seed=1), 10**8)
                           for m in ("RGB", "L"))
        assert served.cost(rgb) - rgb.pixels == pytest.approx(served.cost(gray_probe) - gray_probe.pixels,
                                                              rel=1e-2)
