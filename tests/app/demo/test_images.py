"""The demo page's own image work and what it shows of the answers, in a real browser against a
real server: noise added to an image with alpha, the latent chart's values, the noise σ."""

from __future__ import annotations

import io
import re
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.app.demo.site import (
    ROOT,
    Site,
    Visit,
    download,
    open_page,
    set_range,
)

EXAMPLES = ROOT / "app" / "static" / "examples"


def with_alpha(mode: str) -> tuple[bytes, np.ndarray]:
    """A 96x64 mid-gray or colour picture whose left third is fully transparent (and black, as a
    browser decodes it), its middle third half transparent; the PNG and its pixels."""
    rng = np.random.default_rng(3)
    bands = 2 if mode == "LA" else 4
    pixels = np.zeros((64, 96, bands), np.uint8)
    pixels[..., :-1] = rng.integers(60, 196, (64, 96, bands - 1))
    pixels[:, :32, :-1] = 0
    pixels[..., -1] = 255
    pixels[:, :32, -1] = 0
    pixels[:, 32:64, -1] = 128
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, format="PNG")
    return buf.getvalue(), pixels


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_noise_keeps_alpha_and_leaves_the_transparent_part_alone(
    visit: Visit, site: Site, mode: str
) -> None:
    page = visit.page
    png, clean = with_alpha(mode)
    page.set_input_files("#denoise-file",
                         files=[{"name": "logo.png", "mimeType": "image/png", "buffer": png}])
    kind = "gray" if mode == "LA" else "colour"
    expect(page.locator("#denoise-input-info")).to_contain_text(f"96×64 {kind} with alpha")
    page.select_option("#denoise-model", "photo-denoiser")
    page.check("#noise-on")
    set_range(page, "#noise-sigma", 25)
    page.click("#denoise-run")
    expect(page.locator("#stat-psnr-out")).to_have_text(re.compile(r"\d+\.\d\d dB"))

    (sent,) = site.recorder.to("/v1/models/photo-denoiser/denoise")
    noisy_img = Image.open(io.BytesIO(sent.image()))
    assert noisy_img.mode == mode  # the alpha goes up with the noisy copy
    noisy = np.asarray(noisy_img).astype(np.int64)
    assert (noisy[..., -1] == clean[..., -1]).all()  # alpha as it was
    transparent, opaque = clean[..., -1] == 0, clean[..., -1] == 255
    assert (noisy[transparent] == clean[transparent]).all()  # no noise where nothing shows
    residual = noisy[opaque][:, :-1] - clean[opaque][:, :-1]
    assert 22 < residual.std() < 27

    shown = np.asarray(Image.open(io.BytesIO(download(page, "#denoise-download"))))
    direct = httpx.post(f"{site.url}/v1/models/photo-denoiser/denoise", timeout=60,
                        files={"image": ("noisy.png", sent.image(), "image/png")})
    assert (shown == np.asarray(Image.open(io.BytesIO(direct.content)))).all()
    assert (shown[..., -1] == clean[..., -1]).all()  # the service keeps it too
    visit.check()


def test_the_latent_values_are_readable_without_hovering(visit: Visit, site: Site) -> None:
    page = visit.page
    page.click("#tab-vae")
    page.click("#encode-card .mini[data-src$='digit-0.png']")
    code = httpx.post(f"{site.url}/v1/models/mnist-vae/encode", timeout=60, files={
        "image": ("digit-0.png", (EXAMPLES / "digit-0.png").read_bytes(), "image/png")
    }).json()["results"][0]
    values = page.locator("#latent-chart details")
    rows = values.locator("tbody tr")
    expect(rows).to_have_count(64)
    expect(rows.first).to_be_hidden()  # folded under the chart until asked for
    values.locator("summary").click()
    expect(rows.nth(5)).to_be_visible()
    shown = rows.evaluate_all("trs => trs.map(tr => [...tr.cells].map(c => c.textContent))")
    assert shown == [[f"z{i}", f"{m:.3f}", f"{s:.3f}"] for i, (m, s) in
                     enumerate(zip(code["mu"], code["sigma"], strict=True))]
    visit.check()


def test_the_noise_sigma_shows_only_for_a_model_that_takes_one(visit: Visit) -> None:
    page = visit.page
    page.click("button.example[data-name='digit-3.png']")
    expect(page.locator("#denoise-model")).to_have_value("mnist-dae")
    page.click("#denoise-run")
    expect(page.locator("#denoise-stats")).to_be_visible()
    expect(page.locator("#stat-sigma-box")).to_be_hidden()  # a digit model is blind: no σ to show
    page.click("button.example[data-name='still-life.png']")
    page.click("#denoise-run")
    expect(page.locator("#stat-sigma")).to_have_text(re.compile(r"^\d+\.\d\d$"))
    expect(page.locator("#stat-sigma-box")).to_be_visible()
    visit.check()


@pytest.mark.parametrize("width", [1360, 1000, 700])
def test_the_sample_controls_stay_inside_their_card(browser: Any, site: Site, width: int) -> None:
    """Images, a 19-digit seed with its Random button, and the temperature fit the Sample card at
    the three-, two- and one-column layouts."""
    v = open_page(browser, site.url, width=width)
    page = v.page
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    page.click("#tab-vae")
    page.fill("#sample-seed", "9223372036854775807")
    card = page.locator("#sample-seed").evaluate("e => e.closest('.card').getBoundingClientRect()"
                                                 ".right")
    for control in ("#sample-n", "#sample-seed", "#sample-dice", "#sample-temp"):
        box = page.locator(control).bounding_box()
        assert box is not None and box["x"] + box["width"] <= card, control
    v.page.context.close()
