"""The demo page with the files people actually pick, in a real browser against a real server: an
image the browser cannot show (a TIFF), a small colour picture, a large image still being read
when another is chosen; and the VAE panel: a digit the browser cannot show, and answers that come
after the model or the digit changed; what it tells screen readers, and a model list it cannot
fetch."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from tests.app.demo.site import ROOT, Site, Visit, open_page
from tests.app.helpers import image_bytes


def pick(page: Any, selector: str, name: str, data: bytes, mime: str = "image/png") -> None:
    page.set_input_files(selector, files=[{"name": name, "mimeType": mime, "buffer": data}])


UNDRAWN = """(scope) => [...document.querySelectorAll(`${scope} img`)]
    .filter((i) => i.checkVisibility() && !(i.complete && i.naturalWidth > 0)).map((i) => i.alt)"""


def images_are_drawn(page: Any, scope: str) -> None:
    """Until every image shown in ``scope`` is drawn; fails naming those that are not. An image
    is not drawn at once (its blob or data URL loads after its ``src`` is set), and one the
    browser cannot read is replaced by a stand-in (after its error event)."""
    try:
        page.wait_for_function(f"(scope) => ({UNDRAWN})(scope).length === 0", arg=scope)
    except PlaywrightTimeoutError:
        raise AssertionError(f"images not drawn: {page.evaluate(UNDRAWN, scope)}") from None


# ---- denoise ------------------------------------------------------------------------------------


def test_an_image_the_browser_cannot_show_goes_to_the_photo_model_and_shows_its_answer_alone(
    visit: Visit, site: Site
) -> None:
    page = visit.page
    page.select_option("#denoise-model", "mnist-dae")  # what an earlier digit left chosen
    pick(page, "#denoise-file", "scan.tiff", image_bytes((120, 80), "RGB", "TIFF"), "image/tiff")
    expect(page.locator("#denoise-input-info")).to_contain_text("cannot preview")
    expect(page.locator("#denoise-model")).to_have_value("photo-denoiser")  # not a 28x28 digit
    page.click("#denoise-run")
    expect(page.locator("#compare-after")).to_be_visible()
    assert [p.path for p in site.recorder.posts] == ["/v1/models/photo-denoiser/denoise"]
    expect(page.locator("#compare-after")).to_have_js_property("naturalWidth", 120)  # once loaded
    assert page.locator("#compare").evaluate("el => el.style.getPropertyValue('--ar')") == "1.5"
    expect(page.locator("#compare-before")).to_be_hidden()  # no broken input beside it
    expect(page.locator("#compare-slider")).to_be_hidden()
    images_are_drawn(page, "#panel-denoise")

    pick(page, "#denoise-file", "small.png", image_bytes((50, 50), "RGB"))  # colour: not a digit
    expect(page.locator("#denoise-input-info")).to_contain_text("50×50 colour")
    expect(page.locator("#denoise-model")).to_have_value("photo-denoiser")
    page.click("#denoise-run")
    expect(page.locator("#compare-before")).to_be_visible()  # the slider is back
    expect(page.locator("#compare-slider")).to_be_visible()
    images_are_drawn(page, "#panel-denoise")
    visit.check()


GATE_PNG_ENCODING = """() => {
    // the page's own PNG encoding (the noisy copy) waits until window.release() is called
    const real = Response.prototype.arrayBuffer;
    let open;
    const gate = new Promise((resolve) => (open = resolve));
    window.release = () => open();
    Response.prototype.arrayBuffer = async function (...rest) {
        await gate;
        return real.apply(this, rest);
    };
}"""


def test_adding_noise_says_so_and_can_be_cancelled(visit: Visit, site: Site) -> None:
    page = visit.page
    page.click("button.example[data-name='landscape.png']")
    page.check("#noise-on")
    page.evaluate(GATE_PNG_ENCODING)
    page.click("#denoise-run")
    expect(page.locator("#denoise-progress-text")).to_have_text("Adding noise in your browser…")
    expect(page.locator("#denoise-progress")).to_be_visible()
    expect(page.locator("#denoise-run")).to_be_disabled()  # no second run meanwhile
    page.click("#denoise-cancel")
    page.evaluate("window.release()")
    expect(page.locator("#denoise-empty")).to_have_text("Cancelled.")
    expect(page.locator("#denoise-progress")).to_be_hidden()
    expect(page.locator("#denoise-run")).to_be_enabled()
    page.evaluate("fetch('/readyz')")  # a round trip: an upload on its way would be in by now
    assert site.recorder.to("/denoise") == []
    visit.check()


def test_the_page_offers_the_formats_the_service_reads(visit: Visit, site: Site) -> None:
    page = visit.page
    refused = httpx.post(f"{site.url}/v1/models/photo-denoiser/denoise", timeout=60,
                         files={"image": ("a.gif", image_bytes((8, 8), "RGB", "GIF"), "image/gif")})
    said = re.search(r"send (.+)$", refused.json()["error"]["message"])
    assert said is not None
    expect(page.locator("#dropzone .hint")).to_contain_text(said[1])  # "PNG, JPEG, WebP, BMP or TIFF"
    formats = re.findall(r"\w+", said[1].replace(" or ", " "))
    suffixes = {"JPEG": ".jpg", "TIFF": ".tiff"}
    for chooser in page.locator("input[type=file]").all():  # the file dialogs offer just those
        accepted = chooser.get_attribute("accept").split(",")
        assert sorted(a for a in accepted if a.startswith("image/")) == sorted(
            f"image/{f.lower()}" for f in formats)
        assert all(suffixes.get(f, f".{f.lower()}") in accepted for f in formats)


GATE_DECODES = """(slowSize) => {
    // the decode of a file of ``slowSize`` bytes waits until window.release() is called;
    // window.slowDecoded settles once it is decoded
    const real = window.createImageBitmap;
    let open, decoded;
    const gate = new Promise((resolve) => (open = resolve));
    window.release = () => open();
    window.slowDecoded = new Promise((resolve) => (decoded = resolve));
    window.createImageBitmap = async (blob, ...rest) => {
        if (blob.size !== slowSize) return real(blob, ...rest);
        await gate;
        try {
            return await real(blob, ...rest);
        } finally {
            decoded();
        }
    };
}"""

# once the slow decode has settled, a task later: the page has done all it does with it
AFTER_SLOW_DECODE = "window.slowDecoded.then(() => new Promise((done) => setTimeout(done, 0)))"


def test_an_image_still_being_read_gives_way_to_one_chosen_after_it(visit: Visit, site: Site) -> None:
    page = visit.page
    photo = image_bytes((300, 200), "RGB")
    digit = image_bytes((28, 28), "L")
    page.evaluate(GATE_DECODES, len(photo))
    pick(page, "#denoise-file", "big-photo.png", photo)
    expect(page.locator("#denoise-input-info")).to_have_text("Reading big-photo.png…")
    expect(page.locator("#denoise-run")).to_be_disabled()  # nothing to send yet
    pick(page, "#denoise-file", "digit.png", digit)
    expect(page.locator("#denoise-input-info")).to_contain_text("digit.png · 28×28 gray")
    page.evaluate("window.release()")  # the photo's decode ends last
    page.evaluate(AFTER_SLOW_DECODE)
    the_digit_is_what_is_denoised(visit, site, digit)


def the_digit_is_what_is_denoised(visit: Visit, site: Site, digit: bytes) -> None:
    """The input line names the digit chosen last, the digit model is chosen for it, and Denoise
    sends that digit."""
    page = visit.page
    expect(page.locator("#denoise-input-info")).to_contain_text("digit.png · 28×28 gray")
    expect(page.locator("#denoise-model")).to_have_value("mnist-dae")
    page.click("#denoise-run")
    expect(page.locator("#compare")).to_be_visible()
    (sent,) = site.recorder.to("/denoise")
    assert sent.image() == digit
    visit.check()


def hold(page: Any, pattern: str) -> list[Any]:
    """Requests to ``pattern`` are held until the test lets them go (``route.continue_()``)."""
    held: list[Any] = []
    page.route(pattern, lambda route: held.append(route))
    return held


def until_held(page: Any, held: list[Any]) -> None:
    """Until a held request has reached the test (each call to the page lets its routes in)."""
    for _ in range(500):
        if held:
            return
        page.evaluate("() => new Promise((done) => setTimeout(done, 10))")
    raise AssertionError("no request was held")


WATCH_EXAMPLE = """(name) => {
    // window.exampleDone settles once the page has done all it does with the example ``name``:
    // its body read, then every decode the page had started by a task later ended, a task later
    const realBlob = Response.prototype.blob;
    const realDecode = window.createImageBitmap;
    const decodes = [];
    window.createImageBitmap = (...args) => {
        const decoded = realDecode(...args);
        decodes.push(decoded.catch(() => null));
        return decoded;
    };
    let read;
    const bodyRead = new Promise((resolve) => (read = resolve));
    Response.prototype.blob = async function (...rest) {
        try {
            return await realBlob.apply(this, rest);
        } finally {
            if (this.url.endsWith("/" + name)) read();
        }
    };
    const aTask = () => new Promise((done) => setTimeout(done, 0));
    window.exampleDone = bodyRead.then(aTask).then(() => Promise.all(decodes)).then(aTask);
}"""


def test_an_example_still_being_fetched_gives_way_to_a_file_chosen_after_it(
    visit: Visit, site: Site
) -> None:
    page = visit.page
    digit = image_bytes((28, 28), "L")
    page.evaluate(WATCH_EXAMPLE, "landscape.png")
    held = hold(page, "**/static/examples/landscape.png")
    page.click("button.example[data-name='landscape.png']")
    until_held(page, held)
    pick(page, "#denoise-file", "digit.png", digit)  # while the example is on its way
    expect(page.locator("#denoise-input-info")).to_contain_text("digit.png · 28×28 gray")
    held[0].continue_()  # the example arrives last
    page.evaluate("window.exampleDone")
    the_digit_is_what_is_denoised(visit, site, digit)


def test_a_noise_sigma_the_service_would_refuse_is_pointed_out_before_sending(
    visit: Visit, site: Site
) -> None:
    page = visit.page
    page.click("button.example[data-name='still-life.png']")
    page.check("#sigma-on")
    warning = page.locator("#denoise-warning")
    for typed in ("", "300", "-5"):  # the API would answer "query.sigma: unable to parse..."
        page.fill("#sigma", typed)
        page.click("#denoise-run")
        expect(warning).to_contain_text("Give the noise σ as a number from 0 to 255, or uncheck")
        expect(page.locator("#sigma")).to_be_focused()
    assert site.recorder.to("/denoise") == []  # nothing was sent
    page.fill("#sigma", "30")
    expect(warning).to_be_hidden()
    page.click("#denoise-run")
    expect(page.locator("#compare")).to_be_visible()
    assert [p.query for p in site.recorder.to("/denoise")] == ["sigma=30"]
    visit.check()


# ---- VAE ----------------------------------------------------------------------------------------


def test_a_digit_the_browser_cannot_show_is_encoded_and_interpolated(visit: Visit, site: Site) -> None:
    page = visit.page
    page.click("#tab-vae")
    tiff = image_bytes((56, 56), "L", "TIFF")  # twice the model's size, in a format Chromium cannot read
    pick(page, "#encode-file", "digit.tiff", tiff, "image/tiff")  # encoded at once
    expect(page.locator("#latent-chart .dim")).to_have_count(64)
    expect(page.locator("#encode-error")).to_be_hidden()
    expect(page.locator("#encode-thumb")).to_have_attribute("alt", re.compile("^Digit to encode: digit.tiff"))
    pick(page, "#interp-file-b", "end.tiff", tiff, "image/tiff")
    page.click("#interp-run")
    expect(page.locator("#interp-strip .step")).to_have_count(10)
    expect(page.locator("#interp-error")).to_be_hidden()
    assert [p.query for p in site.recorder.posts] == ["resize=true", "resize=true&steps=10"]
    expect(page.locator("#interp-thumb-b")).to_have_attribute("alt", re.compile("^End digit: end.tiff"))
    images_are_drawn(page, "#panel-vae")  # a stand-in where the browser cannot show it
    visit.check()


def test_a_digit_picked_after_a_result_is_never_shown_beside_it(visit: Visit, site: Site) -> None:
    page = visit.page
    page.click("#tab-vae")
    page.click("#interp-run")
    expect(page.locator("#interp-view")).to_be_visible()
    pick(page, "#interp-file-a", "mine.png", image_bytes((28, 28), "L"))
    expect(page.locator("#interp-view")).to_be_hidden()  # the path between the old digits

    page.click("#encode-run")
    expect(page.locator("#latent-chart")).to_be_visible()
    mine = image_bytes((28, 28), "L", seed=5)
    pick(page, "#encode-file", "five.png", mine)  # the chart follows the digit shown
    expect(page.locator("#encode-run")).not_to_have_attribute("aria-busy", "true")
    encodes = site.recorder.to("/encode")
    assert len(encodes) == 2 and encodes[1].image() == mine
    code = httpx.post(f"{site.url}/v1/models/mnist-vae/encode", timeout=60,
                      files={"image": ("five.png", mine, "image/png")}).json()["results"][0]
    shown = page.locator("#latent-chart .dim").evaluate_all("gs => gs.map(g => Number(g.dataset.mu))")
    assert shown == code["mu"]
    visit.check()


def test_an_answer_for_a_model_no_longer_chosen_is_not_shown(visit: Visit) -> None:
    page = visit.page
    page.click("#tab-vae")
    held = hold(page, "**/v1/models/mnist-vae/sample")
    page.click("#sample-run")
    expect(page.locator("#sample-run")).to_have_attribute("aria-busy", "true")
    page.select_option("#vae-model", "mnist-dae")  # the samples' model is gone from the page
    expect(page.locator("#sample-run")).to_be_disabled()
    until_held(page, held)
    held[0].continue_()
    expect(page.locator("#sample-run")).not_to_have_attribute("aria-busy", "true")
    expect(page.locator("#sample-run")).to_be_disabled()  # mnist-dae does not sample
    expect(page.locator("#sample-figure")).to_be_hidden()
    expect(page.locator("#sample-error")).to_be_hidden()
    visit.check()


def test_a_digit_picked_while_another_is_encoded_is_the_one_charted(visit: Visit, site: Site) -> None:
    page = visit.page
    page.click("#tab-vae")
    held = hold(page, "**/v1/models/mnist-vae/encode")
    page.click("#encode-card .mini[data-src$='digit-0.png']")
    until_held(page, held)
    page.click("#encode-card .mini[data-src$='digit-7.png']")  # while 0 is on its way
    assert len(held) == 1  # 7 waits for 0's answer
    page.unroute("**/v1/models/mnist-vae/encode")  # lets 0's request go on
    expect(page.locator("#encode-run")).not_to_have_attribute("aria-busy", "true")
    encodes = site.recorder.to("/encode")
    assert len(encodes) == 2  # 0, then 7
    seven = (ROOT / "app" / "static" / "examples" / "digit-7.png").read_bytes()
    assert encodes[1].image() == seven
    code = httpx.post(f"{site.url}/v1/models/mnist-vae/encode", timeout=60,
                      files={"image": ("digit-7.png", seven, "image/png")}).json()["results"][0]
    shown = page.locator("#latent-chart .dim").evaluate_all("gs => gs.map(g => Number(g.dataset.mu))")
    assert shown == code["mu"]
    expect(page.locator("#encode-thumb")).to_have_attribute("src", re.compile("digit-7"))
    visit.check()


def test_a_negative_seed_is_refused_for_being_negative(visit: Visit, site: Site) -> None:
    page = visit.page
    page.click("#tab-vae")
    page.fill("#sample-seed", "-1")
    page.click("#sample-run")
    refused = httpx.post(f"{site.url}/v1/models/mnist-vae/sample", json={"n": 16, "seed": -1})
    assert "greater than or equal to 0" in refused.json()["error"]["message"]
    expect(page.locator("#sample-error .error-message")).to_have_text(refused.json()["error"]["message"])
    visit.check(allowed_statuses=(422,))


def test_each_result_is_told_to_screen_readers(visit: Visit) -> None:
    """Keyboard only; what the page says in its live regions (role=status) once a result shows."""
    page = visit.page
    page.focus("button.example[data-name='digit-7.png']")
    page.keyboard.press("Enter")
    expect(page.locator("#denoise-run")).to_be_enabled()
    page.focus("#denoise-run")
    page.keyboard.press("Enter")
    said = page.get_by_role("status").filter(has_text="Denoised")
    expect(said).to_have_text(re.compile(r"^Denoised digit-7\.png with mnist-dae in (\d+ ms|\d\.\d\d s)\.$"))
    page.focus("#tab-denoise")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#panel-vae")).to_be_visible()
    page.focus("#sample-run")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").filter(has_text="samples")).to_have_text(
        "Drew 16 samples with seed 0.")
    page.focus("#interp-run")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").filter(has_text="path")).to_have_text(
        "Decoded the path between the two digits in 10 steps.")
    visit.check()


def test_a_model_list_that_cannot_be_fetched_is_not_asked_for_again_and_again(
    browser: Any, site: Site
) -> None:
    """The service is ready (/readyz answers) but the list cannot be fetched (a proxy or an
    extension drops it): the page says so and offers Try again, without asking again, however
    long it stays open (its clock moved on past many readiness checks)."""
    visit = open_page(browser, site.url, clock=True)
    page = visit.page
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    page.route("**/v1/models", lambda route: route.abort())

    def lists() -> int:
        return sum(r.url.endswith("/v1/models") for r in visit.requests)

    before = lists()
    page.reload()
    expect(page.locator("#retry-button")).to_be_visible()
    expect(page.locator("#service-status")).to_have_text("unavailable")
    page.clock.run_for(60_000)  # a minute of the page's timers: its readiness checks ran
    page.evaluate("fetch('/readyz')")  # one more round trip: any request the page queued is out
    assert sum(r.url.endswith("/readyz") for r in visit.requests) > 2
    assert lists() == before + 1
    assert not [e for e in visit.errors if e.startswith("uncaught")]
    page.context.close()
