"""The demo page at ``/`` in a real browser: Playwright driving Debian's Chromium against a real
uvicorn server that serves the shipped checkpoints.

Each test checks what the page shows against the API's own answer for the same input, that no
request left the service's origin, and that the browser logged no console errors. Screenshots go
to ``AESERVE_SCREENSHOT_DIR`` when set (docs/screenshots/ holds the committed ones), else to a
temporary folder.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from playwright.sync_api import expect

from tests.app.demo.site import (
    ROOT,
    Site,
    Visit,
    download,
    open_page,
    pixels,
    psnr,
    set_range,
)

EXAMPLES = ROOT / "app" / "static" / "examples"


# ---- denoise ------------------------------------------------------------------------------------


def test_a_dropped_digit_comes_back_as_the_api_answers_it(visit: Visit, site: Site) -> None:
    page = visit.page
    digit = (EXAMPLES / "digit-3.png").read_bytes()
    dropped = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], "digit-3.png", { type: "image/png" }));
            return data;
        }""",
        base64.b64encode(digit).decode(),
    )
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})  # dropped on the page
    expect(page.locator("#denoise-input-info")).to_contain_text("28×28 gray")
    page.select_option("#denoise-model", "mnist-dae")
    page.click("#denoise-run")
    expect(page.locator("#compare")).to_be_visible()
    expect(page.locator("#stat-time")).to_have_text(re.compile(r"\d+ ms|\d\.\d\d s"))
    shown = download(page, "#denoise-download")

    (sent,) = site.recorder.to("/v1/models/mnist-dae/denoise")
    assert sent.image() == digit  # the file as chosen, untouched
    direct = httpx.post(f"{site.url}/v1/models/mnist-dae/denoise",
                        files={"image": ("digit-3.png", digit, "image/png")}, timeout=60)
    assert direct.status_code == 200
    assert shown == direct.content
    visit.check()


def test_add_noise_measures_psnr_against_the_clean_photo(visit: Visit, site: Site, shots: Path) -> None:
    page = visit.page
    clean = (EXAMPLES / "still-life.png").read_bytes()
    page.click("button.example[data-name='still-life.png']")
    expect(page.locator("#denoise-input-info")).to_contain_text("256×256 gray")
    expect(page.locator("#denoise-model")).to_have_value("photo-denoiser")
    page.check("#noise-on")
    set_range(page, "#noise-sigma", 25)
    expect(page.locator("#noise-sigma-out")).to_contain_text("σ 25")
    page.click("#denoise-run")
    expect(page.locator("#stat-psnr-out")).to_have_text(re.compile(r"\d+\.\d\d dB"))
    shown = download(page, "#denoise-download")

    (sent,) = site.recorder.to("/v1/models/photo-denoiser/denoise")
    assert "sigma" not in sent.query  # blind unless asked
    noisy = sent.image()
    assert Image.open(io.BytesIO(noisy)).mode == "L"  # a gray image stays gray
    residual = pixels(noisy) - pixels(clean)
    assert 22 < residual.std() < 26  # σ 25, a little less where clipping bites
    direct = httpx.post(f"{site.url}/v1/models/photo-denoiser/denoise",
                        files={"image": ("noisy.png", noisy, "image/png")}, timeout=120)
    assert shown == direct.content
    want_in = psnr(pixels(noisy), pixels(clean))
    want_out = psnr(pixels(direct.content), pixels(clean))
    expect(page.locator("#stat-psnr-in")).to_have_text(f"{want_in:.2f} dB")
    expect(page.locator("#stat-psnr-out")).to_have_text(f"{want_out:.2f} dB")
    assert want_out > want_in + 3
    expect(page.locator("#stat-sigma")).to_have_text(f"{float(direct.headers['x-noise-sigma']):.2f}")
    set_range(page, "#compare-slider", 35)
    page.screenshot(path=str(shots / "denoise.png"), full_page=True)
    visit.check()


def test_a_given_sigma_is_sent_and_the_answered_one_shown(visit: Visit, site: Site) -> None:
    page = visit.page
    page.click("button.example[data-name='still-life.png']")
    expect(page.locator("#sigma-field")).to_be_visible()
    page.check("#sigma-on")
    page.fill("#sigma", "30")
    page.click("#denoise-run")
    expect(page.locator("#compare")).to_be_visible()
    (sent,) = site.recorder.to("/v1/models/photo-denoiser/denoise")
    assert sent.query == "sigma=30"
    direct = httpx.post(f"{site.url}/v1/models/photo-denoiser/denoise", params={"sigma": 30},
                        files={"image": ("s.png", sent.image(), "image/png")}, timeout=120)
    expect(page.locator("#stat-sigma")).to_have_text(f"{float(direct.headers['x-noise-sigma']):.2f}")
    visit.check()


def test_cancel_aborts_the_request(visit: Visit) -> None:
    page = visit.page
    held: list[Any] = []
    page.route("**/v1/models/*/denoise*", lambda route: held.append(route))  # never answered
    failed: list[Any] = []
    page.on("requestfailed", lambda request: failed.append(request))
    page.click("button.example[data-name='landscape.png']")
    expect(page.locator("#denoise-input-info")).to_contain_text("360×240 colour")
    with page.expect_request("**/v1/models/*/denoise*") as sent:
        page.click("#denoise-run")
    expect(page.locator("#denoise-progress")).to_be_visible()
    # the browser tells of the abort on its own time, not before the page shows it
    with page.expect_event("requestfailed"):
        page.click("#denoise-cancel")
    expect(page.locator("#denoise-empty")).to_have_text("Cancelled.")
    expect(page.locator("#denoise-progress")).to_be_hidden()
    expect(page.locator("#denoise-run")).to_be_enabled()
    expect(page.locator("#denoise-error")).to_be_hidden()
    assert [r.url for r in failed] == [sent.value.url]
    visit.check()


WATCH_LIVE = """() => {
    // window.said: each text the Denoise panel's live regions come to hold, in turn (a screen
    // reader's announcements); window.shown: each text of the visible progress line
    window.said = [];
    window.shown = [];
    const live = [...document.querySelectorAll("#panel-denoise [aria-live]:not([aria-live=off]), " +
        "#panel-denoise [role=status], #panel-denoise [role=alert]")];
    const last = new Map(live.map((el) => [el, el.textContent.trim()]));
    new MutationObserver(() => {
        for (const el of live) {
            const text = el.textContent.trim();
            if (text && last.get(el) !== text) window.said.push(text);
            last.set(el, text);
        }
        const line = document.getElementById("denoise-progress-text").textContent;
        if (line && window.shown.at(-1) !== line) window.shown.push(line);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
}"""


def test_a_run_tells_screen_readers_its_steps_not_each_percent(visit: Visit) -> None:
    page = visit.page
    page.click("button.example[data-name='landscape.png']")
    expect(page.locator("#denoise-run")).to_be_enabled()
    page.evaluate(WATCH_LIVE)
    page.click("#denoise-run")
    expect(page.locator("#denoise-download")).to_be_visible()
    said, shown = page.evaluate("[window.said, window.shown]")
    assert any(re.fullmatch(r"Uploading \d+ % of \d+ KiB", line) for line in shown), shown
    assert len(said) == 3, said
    assert re.fullmatch(r"Uploading landscape\.png, \d+ KiB…", said[0]), said
    assert said[1] == "Denoising on the service…"
    assert said[2].startswith("Denoised landscape.png with photo-denoiser in ")
    visit.check()


def test_an_api_error_is_shown_as_the_api_words_it(visit: Visit, site: Site) -> None:
    page = visit.page
    junk = b"this is not an image"
    page.set_input_files(
        "#denoise-file", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": junk}]
    )
    expect(page.locator("#denoise-input-info")).to_contain_text("cannot preview")
    page.click("#denoise-run")
    direct = httpx.post(f"{site.url}/v1/models/photo-denoiser/denoise",
                        files={"image": ("notes.png", junk, "image/png")}, timeout=60)
    error = direct.json()["error"]
    expect(page.locator("#denoise-error .error-message")).to_have_text(error["message"])
    expect(page.locator("#denoise-error .error-code")).to_have_text(error["code"])
    visit.check(allowed_statuses=(direct.status_code,))


# ---- VAE ----------------------------------------------------------------------------------------


def test_vae_samples_latents_and_interpolation(visit: Visit, site: Site, shots: Path) -> None:
    page = visit.page
    page.click("#tab-vae")
    expect(page.locator("#vae-model")).to_have_value("mnist-vae")

    page.fill("#sample-seed", "7")
    set_range(page, "#sample-temp", 0.8)
    page.click("#sample-run")
    expect(page.locator("#sample-meta")).to_contain_text("seed 7")
    grid = download(page, "#sample-download")
    direct = httpx.post(f"{site.url}/v1/models/mnist-vae/sample", headers={"Accept": "image/png"},
                        json={"n": 16, "seed": 7, "temperature": 0.8}, timeout=60)
    assert grid == direct.content
    expect(page.locator("#sample-grid")).to_have_js_property(  # once loaded: a blob's image is not at once
        "naturalWidth", Image.open(io.BytesIO(grid)).width)

    page.click("#encode-card .mini[data-src$='digit-0.png']")
    dims = page.locator("#latent-chart .dim")
    expect(dims).to_have_count(64)
    code = httpx.post(f"{site.url}/v1/models/mnist-vae/encode", timeout=60, files={
        "image": ("digit-0.png", (EXAMPLES / "digit-0.png").read_bytes(), "image/png")
    }).json()["results"][0]
    shown_mu = [float(v) for v in dims.evaluate_all("gs => gs.map(g => g.dataset.mu)")]
    shown_sigma = [float(v) for v in dims.evaluate_all("gs => gs.map(g => g.dataset.sigma)")]
    assert shown_mu == code["mu"] and shown_sigma == code["sigma"]

    set_range(page, "#interp-steps", 9)
    page.click("#interp-run")
    steps = page.locator("#interp-strip .step")
    expect(steps).to_have_count(9)
    (sent,) = site.recorder.to("/v1/models/mnist-vae/interpolate")
    assert sent.query == "steps=9"
    assert sent.images() == [(EXAMPLES / f"digit-{d}.png").read_bytes() for d in (2, 7)]
    set_range(page, "#interp-slider", 4)
    expect(steps.nth(4)).to_have_class(re.compile(r"\bcurrent\b"))
    page.screenshot(path=str(shots / "vae.png"), full_page=True)
    visit.check()


def test_narrow_screens_get_one_column(browser: Any, site: Site, shots: Path) -> None:
    visit = open_page(browser, site.url, width=420, height=900)
    page = visit.page
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    page.click("button.example[data-name='digit-7.png']")
    page.check("#noise-on")
    set_range(page, "#noise-sigma", 76)
    page.click("#denoise-run")
    expect(page.locator("#stat-psnr-out")).to_have_text(re.compile(r"dB"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 420  # no sideways scrolling
    page.screenshot(path=str(shots / "denoise-narrow.png"), full_page=True)
    visit.check()
    page.context.close()


def test_the_smallest_phones_scroll_only_down_and_show_a_whole_seed(browser: Any, site: Site) -> None:
    visit = open_page(browser, site.url, width=320, height=640)
    page = visit.page
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#service-status")).to_contain_text("3 models")  # the longest status
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    page.click("#tab-vae")
    seed = page.locator("#sample-seed")
    seed.fill("1816989216607902918")  # 19 digits, as the service draws them
    assert seed.evaluate("el => el.scrollWidth <= el.clientWidth"), "the seed is cut off"
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    visit.check()
    page.context.close()


# ---- races, failures before a request, focus -----------------------------------------------------


def test_an_image_chosen_during_a_run_stops_it_and_is_what_the_next_run_shows(visit: Visit) -> None:
    page = visit.page
    held: list[Any] = []
    page.route("**/v1/models/*/denoise*", lambda route: held.append(route))  # never answered
    page.click("button.example[data-name='landscape.png']")
    with page.expect_request("**/v1/models/*/denoise*") as sent:
        page.click("#denoise-run")
    expect(page.locator("#denoise-progress")).to_be_visible()
    with page.expect_event("requestfailed") as aborted:  # the photo's request, aborted by the page
        page.click("button.example[data-name='digit-7.png']")  # mid-run: the photo's run stops
    assert aborted.value.url == sent.value.url
    expect(page.locator("#denoise-progress")).to_be_hidden()
    expect(page.locator("#denoise-empty")).to_have_text("Ready: press Denoise.")
    expect(page.locator("#denoise-run")).to_be_enabled()
    page.unroute("**/v1/models/*/denoise*")
    page.click("#denoise-run")
    expect(page.locator("#denoise-download")).to_have_attribute("download", "digit-7-denoised.png")
    expect(page.locator("#denoise-error")).to_be_hidden()
    expect(page.locator("#compare-after")).to_have_js_property("naturalWidth", 28)


def test_a_vae_input_that_cannot_be_read_is_shown_as_an_error(visit: Visit) -> None:
    page = visit.page
    page.route("**/static/examples/digit-*.png", lambda route: route.abort())
    page.click("#tab-vae")
    page.click("#encode-run")
    expect(page.locator("#encode-error")).to_be_visible()
    page.click("#interp-run")
    expect(page.locator("#interp-error")).to_be_visible()
    assert not [e for e in visit.errors if e.startswith("uncaught")]


def test_an_example_that_cannot_be_fetched_is_shown_as_an_error(visit: Visit) -> None:
    page = visit.page
    page.route("**/static/examples/landscape.png", lambda route: route.abort())
    page.click("button.example[data-name='landscape.png']")
    expect(page.locator("#denoise-error")).to_be_visible()
    expect(page.locator("#denoise-input-info")).to_have_text("Could not load landscape.png.")
    expect(page.locator("#denoise-run")).to_be_disabled()
    assert not [e for e in visit.errors if e.startswith("uncaught")]


def test_a_large_seed_goes_as_typed_and_the_button_keeps_the_focus(visit: Visit, site: Site) -> None:
    page = visit.page
    page.click("#tab-vae")
    seed = "1816989216607902918"  # past what a JavaScript number holds exactly
    page.fill("#sample-seed", seed)
    page.focus("#sample-run")
    page.keyboard.press("Enter")
    expect(page.locator("#sample-meta")).to_contain_text(f"seed {seed}")
    (sent,) = site.recorder.to("/v1/models/mnist-vae/sample")
    assert f'"seed":{seed}' in sent.body.decode()
    assert page.evaluate("document.activeElement.id") == "sample-run"
    page.select_option("#vae-model", "mnist-dae")  # another model: the samples do not stay
    expect(page.locator("#sample-figure")).to_be_hidden()
    visit.check()


def test_a_file_dropped_beside_the_dropzone_does_not_replace_the_page(visit: Visit) -> None:
    prevented = visit.page.evaluate("""() => ["dragover", "drop"].map((type) => {
        const e = new DragEvent(type, {cancelable: true, bubbles: true});
        document.querySelector("header").dispatchEvent(e);
        return e.defaultPrevented;
    })""")
    assert prevented == [True, True]
    visit.check()
