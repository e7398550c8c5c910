"""The fixed-size autoencoders (DAE, VAE): rows, cost, admission before decoding, EXIF, and a score
that a deadline or a disconnect stops."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

import app.kinds.autoencoder as autoencoder
from app import images
from app.admission import Ticket, timeout_error
from app.errors import ApiError
from app.kinds.autoencoder import SCORE_CHUNK, Autoencoder, VariationalAutoencoder
from tests.app.helpers import (
    assert_error,
    decode_png,
    exif_rotated,
    files,
    image_bytes,
    padded_png,
    png_claiming,
    png_of,
    stored_pixels,
    upright_pattern,
)

DAE = "/v1/models/mnist-dae"
VAE = "/v1/models/mnist-vae"
DIGIT = 28 * 28
WAIT_S = 60.0


def served(client: TestClient, name: str) -> Any:
    return client.app.state.registry.models[name]  # type: ignore[attr-defined]


def probes(*datas: bytes) -> list[images.Probe]:
    return [images.probe(d, 4096 * 4096) for d in datas]


def record_calls(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[Any]:
    """Replace ``module.name`` by a wrapper that records each call, then calls the original."""
    calls: list[Any] = []
    original = getattr(module, name)

    def recorded(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, recorded)
    return calls


# ---- rows and cost -----------------------------------------------------------------------------
def test_the_kinds_say_what_they_support(client: TestClient) -> None:
    dae, vae = served(client, "mnist-dae"), served(client, "mnist-vae")
    assert isinstance(dae, Autoencoder) and isinstance(vae, VariationalAutoencoder)
    assert (dae.kind, vae.kind) == ("dae", "vae")
    assert not dae.supports("score") and not dae.supports("sample")
    assert all(vae.supports(op) for op in ("denoise", "encode", "decode", "sample", "score",
                                           "interpolate"))


def test_the_cost_is_pixels_decoded_plus_pixels_the_network_makes(client: TestClient) -> None:
    dae = served(client, "mnist-dae")
    gray, rgb = probes(image_bytes(size=(60, 44)), image_bytes(size=(60, 44), mode="RGBA"))
    assert dae.cost([gray], keep_color=True) == 60 * 44 + DIGIT
    assert dae.cost([rgb], keep_color=True) == 60 * 44 + 3 * DIGIT  # a row per colour plane
    assert dae.cost([rgb], keep_color=False) == 60 * 44 + DIGIT  # encode: one row per image
    assert dae.cost([gray, rgb], keep_color=False, samples=1000) == 2 * (60 * 44 + 1000 * DIGIT)


def test_prepare_gives_a_row_per_plane_or_one_row_in_the_models_channels(client: TestClient) -> None:
    dae = served(client, "mnist-dae")
    rgba = images.decode(probes(image_bytes(size=(60, 44), mode="RGBA"))[0])
    per_plane = dae.prepare(rgba, resize=True, keep_color=True)
    assert per_plane.rows.shape == (3, 1, 28, 28) and per_plane.rows.dtype == torch.uint8
    assert per_plane.per_channel and per_plane.alpha is not None and per_plane.size == (60, 44)
    one = dae.prepare(rgba, resize=True, keep_color=False)
    assert one.rows.shape == (1, 1, 28, 28) and not one.per_channel
    with pytest.raises(ApiError) as wrong:
        dae.prepare(rgba, resize=False, keep_color=True)
    assert (wrong.value.status, wrong.value.code) == (422, "wrong_size")


@pytest.mark.parametrize("op", ["denoise", "encode", "interpolate"])
def test_a_wrong_size_among_several_images_names_the_image(client: TestClient, op: str) -> None:
    # "this one is 40x30" did not say which of the images it was, as a 415 among several does
    parts = [("image", ("seven.png", image_bytes(), "image/png")),
             ("image", ("scan.png", image_bytes(size=(40, 30)), "image/png"))]
    error = assert_error(client.post(f"{DAE}/{op}", files=parts), 422, "wrong_size")
    assert error["message"].startswith("image 2 of 2 ('scan.png'): model mnist-dae takes 28x28")


@pytest.mark.parametrize(("mode", "rows"), [("L", (1, 1, 28, 28)), ("RGB", (3, 1, 28, 28))])
def test_an_image_in_the_models_size_and_mode_becomes_rows_without_pillow(
    client: TestClient, mode: str, rows: tuple[int, ...]
) -> None:
    dae = served(client, "mnist-dae")
    data = image_bytes(size=(28, 28), mode=mode)
    decoded = images.decode(probes(data)[0])
    prep = dae.prepare(decoded, resize=False, keep_color=True)
    assert decoded.pillow is None and prep.rows.shape == rows  # no Pillow image was made
    want = np.asarray(Image.open(io.BytesIO(data)))
    planes = want[None] if mode == "L" else want.transpose(2, 0, 1)
    np.testing.assert_array_equal(prep.rows[:, 0].numpy(), planes)


# ---- admission before decoding -----------------------------------------------------------------
def test_many_huge_images_are_413_too_much_work_before_any_decoding(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = record_calls(monkeypatch, images, "decode")
    bombs = [png_claiming(4096, 4096, colour_type=6) for _ in range(64)]  # 64 x 16.8 MP RGBA
    assert sum(len(b) for b in bombs) < 100_000
    response = client.post(f"{DAE}/denoise", params={"resize": "true"}, files=files(*bombs))
    error = assert_error(response, 413, "too_much_work")
    cost = 64 * (4096 * 4096 + 3 * DIGIT)
    assert f"{cost / 1e6:.3g}" in error["message"] and "AESERVE_MAX_WORK" in error["message"]
    assert "the limit is 8" in error["message"]
    assert decoded == []  # refused from the headers alone


def test_a_request_within_the_cap_is_decoded_and_answered(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = record_calls(monkeypatch, images, "decode")
    response = client.post(f"{DAE}/denoise", files=files(image_bytes(seed=1), image_bytes(seed=2)))
    assert response.status_code == 200 and len(decoded) == 2


# ---- on the event loop or in a thread -----------------------------------------------------------
def record_threads(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    """Replace ``owner.name`` by a wrapper that records the thread of each call."""
    threads: list[int] = []
    original = getattr(owner, name)

    def recorded(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return threads


def flat_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), color=200).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(("data", "on_loop"), [
    (flat_png(1000, 1000), False),  # a megapixel in a few KB: decoded and resized off the loop
    (image_bytes(), True),  # a 28x28 digit, the measured fast path, stays on the loop
], ids=["flat-megapixel", "digit"])
def test_images_are_decoded_prepared_and_encoded_off_the_loop_by_their_pixels(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, data: bytes, on_loop: bool
) -> None:
    assert len(data) < 8 * 1024
    loop = client.portal.call(threading.get_ident)  # type: ignore[union-attr]
    decoded = record_threads(monkeypatch, images, "decode")
    prepared = record_threads(monkeypatch, Autoencoder, "prepare")
    encoded = record_threads(monkeypatch, Autoencoder, "_to_png")
    response = client.post(f"{DAE}/denoise", params={"resize": "true"}, files=files(data))
    assert response.status_code == 200, response.text
    assert len(decoded) == len(prepared) == len(encoded) == 1
    assert all((thread == loop) == on_loop for thread in decoded + prepared + encoded)
    assert client.post(f"{DAE}/encode", params={"resize": "true"}, files=files(data)).status_code == 200
    assert len(prepared) == 2 and (prepared[1] == loop) == on_loop  # encode prepares alike


# ---- EXIF --------------------------------------------------------------------------------------
def test_a_sideways_jpeg_is_denoised_upright_in_the_rotated_size(client: TestClient) -> None:
    jpeg = exif_rotated(upright_pattern(24, 40))  # stored 40 wide, 24 high; shown 24 x 40
    upright = np.rot90(stored_pixels(jpeg), k=-1)  # the stored pixels, turned as EXIF says
    params = {"resize": "true"}
    answer = client.post(f"{DAE}/denoise", params=params, files=files(jpeg))
    assert answer.status_code == 200, answer.text
    out = decode_png(answer.content)
    assert out.size == (24, 40)
    expected = decode_png(client.post(f"{DAE}/denoise", params=params,
                                      files=files(png_of(upright))).content)
    assert np.array_equal(np.asarray(out), np.asarray(expected))


# ---- a score that stops ------------------------------------------------------------------------
def test_a_score_checks_the_ticket_between_chunks_and_stops(client: TestClient) -> None:
    vae = served(client, "mnist-vae")
    checks: list[int] = []

    def check() -> None:
        checks.append(1)
        if len(checks) == 3:
            raise timeout_error(1.0)

    x = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(ApiError) as stopped:
        vae._score((x, 1000, 0), check)
    assert stopped.value.code == "timeout"
    assert len(checks) == 3 < 1000 // SCORE_CHUNK  # two chunks of ten computed


def compute_count(client: TestClient, model: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("aeserve_compute_seconds_count") and f'model="{model}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_score_past_its_deadline_is_503_timeout_and_does_no_work(
    app_with: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app_with(request_timeout_s=1e-6)  # past before the body is read
    scored = record_calls(monkeypatch, autoencoder, "iwae_nll")
    before = compute_count(client, "mnist-vae")
    response = client.post(f"{VAE}/score", params={"k": 1000},
                           files=files(*[image_bytes(seed=i) for i in range(8)]))
    error = assert_error(response, 503, "timeout")
    assert response.headers["retry-after"] == "1" and "AESERVE_REQUEST_TIMEOUT_S" in error["message"]
    assert scored == [] and compute_count(client, "mnist-vae") == before


def multipart(*datas: bytes) -> tuple[bytes, bytes]:
    boundary = "disconnect-test"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{i}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode() + d + b"\r\n" for i, d in enumerate(datas)
    ) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}".encode()


def test_a_client_that_disconnects_while_queued_cancels_its_score(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the whole app: the score waits behind a busy model, the client goes away; the job
    is dropped, the request counts as 499 and as cancelled, with one info line."""
    vae = served(client, "mnist-vae")
    scored = record_calls(monkeypatch, autoencoder, "iwae_nll")
    body, content_type = multipart(image_bytes(seed=1))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/models/mnist-vae/score",
        "raw_path": b"/v1/models/mnist-vae/score", "query_string": b"k=10", "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80), "state": {},
    }
    metrics_before = client.get("/metrics").text

    async def scenario() -> list[dict[str, Any]]:
        gate, started = threading.Event(), threading.Event()

        def hold(arg: object, check: Callable[[], None]) -> None:
            started.set()
            assert gate.wait(WAIT_S)

        blocker = asyncio.ensure_future(vae.batcher.run_alone(hold, None, Ticket(600)))
        assert await asyncio.to_thread(started.wait, WAIT_S)
        queued, gone = asyncio.Event(), asyncio.Event()
        body_sent = False

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            queued.set()  # the ticket now watches the client: its job is in the queue
            await gone.wait()
            return {"type": "http.disconnect"}

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        request = asyncio.ensure_future(client.app(scope, receive, send))
        await asyncio.wait_for(queued.wait(), WAIT_S)
        gone.set()
        await asyncio.wait_for(request, WAIT_S)
        gate.set()
        await blocker
        await vae.batcher.run_alone(lambda arg, check: None, None, Ticket(600))  # queue drained
        return sent

    with caplog.at_level(logging.INFO, logger="aeserve"):
        sent = client.portal.call(scenario)  # type: ignore[union-attr]
    assert sent == []  # nothing is sent to a client that is gone
    assert scored == []  # the queued score never ran
    text = client.get("/metrics").text

    def delta(name: str, *labels: str) -> float:
        def value(t: str) -> float:
            for line in t.splitlines():
                if line.startswith(name + "{") and all(label in line for label in labels):
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        return value(text) - value(metrics_before)

    route = 'route="/v1/models/{name}/score"'
    assert delta("aeserve_requests_total", route, 'status="499"') == 1
    assert delta("aeserve_requests_total", route, 'status="500"') == 0
    assert delta("aeserve_requests_cancelled_total", 'model="mnist-vae"') == 1
    gone_lines = [r for r in caplog.records if "went away" in r.getMessage()]
    assert len(gone_lines) == 1 and gone_lines[0].levelno == logging.INFO
    assert not any(r.exc_info for r in caplog.records)


def test_a_few_pixels_behind_many_bytes_are_probed_and_decoded_off_the_loop(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    padded = padded_png(image_bytes(), 200_000)  # a 28x28 digit behind 200 KB of chunks
    loop = client.portal.call(threading.get_ident)  # type: ignore[union-attr]
    probed = record_threads(monkeypatch, images, "probe")
    decoded = record_threads(monkeypatch, images, "decode")
    for data in (padded, image_bytes()):
        response = client.post(f"{DAE}/denoise", files=files(data))
        assert response.status_code == 200, response.text
    assert [t == loop for t in probed] == [False, True]  # the plain digit stays on the fast path
    assert [t == loop for t in decoded] == [False, True]


def test_a_kind_interpolates_by_decoding_the_straight_path_between_the_ends(
    client: TestClient,
) -> None:
    """interpolate(ends, steps): the decodes of (1 - t) z0 + t z1 at t = 0, 1/(steps-1), ..., 1."""
    vae = served(client, "mnist-vae")
    ends = torch.randn(2, vae.latent_dim, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])[:, None]

    async def both() -> tuple[torch.Tensor, torch.Tensor]:
        answers = []
        for run in (lambda tk: vae.interpolate(ends, 5, tk),
                    lambda tk: vae.decode((1 - t) * ends[0] + t * ends[1], tk)):
            ticket = Ticket(600)
            vae.budget.open(ticket)
            with ticket:
                answers.append(await run(ticket))
        return answers[0], answers[1]

    path, direct = client.portal.call(both)  # type: ignore[union-attr]
    assert path.shape == (5, 1, 28, 28) and torch.equal(path, direct)
    assert not torch.equal(path[0], path[-1])
