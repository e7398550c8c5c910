"""The demo page and the service around it, in a real browser against a real server: the status
pill follows the service as it stops and comes back, an image over the service's limits is
warned about before it is sent, and errors are told in words for people with the API's own
under "Details"."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.app.demo.site import Site, ThreadServer, Visit, only, open_page, serve
from tests.app.helpers import image_bytes

EVERY_MS, DOWN_EVERY_MS = 15000, 3000  # app/static/js/health.js


def readiness_checks(requests: list[Any]) -> int:
    return sum(r.url.endswith("/readyz") for r in requests)


def set_hidden(page: Any, hidden: bool) -> None:
    """The tab hidden or shown, as the browser tells the page (headless tabs are always shown)."""
    page.evaluate("""(hidden) => {
        Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
        document.dispatchEvent(new Event("visibilitychange"));
    }""", hidden)


@pytest.fixture
def watched(browser: Any, tmp_path: Path) -> Iterator[tuple[ThreadServer, Visit]]:
    """A real server of one model, and the page on it, ready, its status pill green and its timers
    moving only when a test runs the page's clock."""
    server = ThreadServer(only(tmp_path, "mnist-dae"))
    server.start()
    try:
        visit = open_page(browser, server.url, clock=True)
        page = visit.page
        pill = page.locator("#service-status")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(pill).to_have_text("1 model: mnist-dae")
        expect(pill).to_have_class(re.compile(r"\bok\b"))
        page.clock.pause_at(page.evaluate("Date.now()") / 1000 + 1)  # seconds
        yield server, visit
        page.context.close()
    finally:
        server.stop()


def test_the_status_pill_follows_the_service(watched: tuple[ThreadServer, Visit]) -> None:
    server, visit = watched
    page = visit.page
    pill = page.locator("#service-status")
    server.stop()  # the periodic check finds it gone, without a request of the user's
    page.clock.run_for(EVERY_MS)
    expect(pill).to_have_text("offline")
    expect(pill).to_have_class(re.compile(r"\bbad\b"))
    server.start()  # and back, on the same port
    page.clock.run_for(DOWN_EVERY_MS)
    expect(pill).to_have_text("1 model: mnist-dae")
    expect(pill).to_have_class(re.compile(r"\bok\b"))

    page.click("button.example[data-name='digit-7.png']")
    expect(page.locator("#denoise-run")).to_be_enabled()
    server.stop()  # a request that cannot reach the service turns it offline at once
    page.click("#denoise-run")
    expect(pill).to_have_text("offline")
    expect(page.locator("#denoise-error .error-friendly")).to_contain_text("cannot be reached")
    expect(page.locator("#denoise-error .error-code")).to_have_text("network")

    set_hidden(page, True)  # a hidden tab does not check
    checks = readiness_checks(visit.requests)
    page.clock.run_for(4 * EVERY_MS)
    assert readiness_checks(visit.requests) == checks
    server.start()
    expect(pill).to_have_text("offline")
    set_hidden(page, False)  # shown again: it checks at once
    expect(pill).to_have_text("1 model: mnist-dae")
    assert readiness_checks(visit.requests) == checks + 1
    page.click("#denoise-run")
    expect(page.locator("#compare")).to_be_visible()
    assert not [e for e in visit.errors if e.startswith("uncaught")]


def test_a_service_that_is_not_ready_is_shown_so(watched: tuple[ThreadServer, Visit]) -> None:
    """503 not_ready from /readyz (as while it drains on SIGTERM): "not ready", with the reason."""
    page = watched[1].page
    pill = page.locator("#service-status")
    body = '{"error": {"code": "not_ready", "message": "shutting down: draining the requests in flight"}}'
    page.route("**/readyz", lambda route: route.fulfill(status=503, body=body,
                                                        content_type="application/json"))
    page.clock.run_for(EVERY_MS)
    expect(pill).to_have_text("not ready")
    expect(pill).to_have_attribute("title", re.compile("draining the requests in flight"))
    page.unroute("**/readyz")
    page.clock.run_for(DOWN_EVERY_MS)
    expect(pill).to_have_text("1 model: mnist-dae")


def test_a_model_list_that_fails_turns_the_pill_red_until_a_retry_gets_it(
    watched: tuple[ThreadServer, Visit]
) -> None:
    """The service is up but GET /v1/models answers 500: the pill says "unavailable" with the
    API's message, not a green "ready"; Try again with the list back turns it green."""
    visit = watched[1]
    page = visit.page
    pill = page.locator("#service-status")
    body = '{"error": {"code": "internal_error", "message": "the model list broke"}}'
    page.route("**/v1/models", lambda route: route.fulfill(status=500, body=body,
                                                          content_type="application/json"))
    page.reload()
    expect(page.locator("#global-error")).to_contain_text("the model list broke")
    expect(pill).to_have_text("unavailable")
    expect(pill).to_have_class(re.compile(r"\bbad\b"))
    expect(pill).to_have_attribute("title", re.compile("the model list broke"))
    page.unroute("**/v1/models")
    page.click("#retry-button")
    expect(pill).to_have_text("1 model: mnist-dae")
    expect(pill).to_have_class(re.compile(r"\bok\b"))
    visit.check(allowed_statuses=(500,))


# ---- the service's limits -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A photo model on a service that takes at most 80,000 pixels and 0.1 megapixel-equivalents
    of work: the 360x240 landscape has too many pixels, the 256x256 still life too much work."""
    folder = only(tmp_path_factory.mktemp("checkpoints"), "photo-denoiser", "mnist-dae")
    yield from serve(folder, max_pixels=80_000, max_work=0.1)


def test_an_image_over_the_limits_is_warned_about_before_it_is_sent(browser: Any, small: Site) -> None:
    visit = open_page(browser, small.url)
    page = visit.page
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    warning = page.locator("#denoise-warning")

    page.click("button.example[data-name='landscape.png']")  # 86,400 pixels: refused for sure
    expect(warning).to_contain_text("This image is 360×240 (0.09 megapixels); the service takes "
                                    "images of up to 0.08 megapixels. Crop it or resize it to "
                                    "346×230 or less")
    expect(page.locator("#denoise-run")).to_be_disabled()

    page.click("button.example[data-name='digit-7.png']")  # fits: no warning
    expect(warning).to_be_hidden()
    expect(page.locator("#denoise-run")).to_be_enabled()

    page.click("button.example[data-name='still-life.png']")  # 65,536 pixels, ~2.3 times the work
    suggestion = re.compile(
        r"This image is 256×256 \(0\.07 megapixels\), more than photo-denoiser can denoise in one "
        r"go on this service \(about 0\.04 megapixels\)\. Crop it or resize it to about (\d+)×(\d+)")
    expect(warning).to_contain_text(suggestion)
    assert small.recorder.to("/denoise") == []  # nothing was sent
    page.click("#denoise-run")  # an estimate: the service has the last word
    shown = page.locator("#denoise-error")
    expect(shown.locator(".error-friendly")).to_have_text(  # the answer came: the request was recorded
        "This image is too big for the service to process in one go. Crop or resize it, then try again.")
    (sent,) = small.recorder.to("/denoise")
    direct = httpx.post(f"{small.url}/v1/models/photo-denoiser/denoise", timeout=60, files={
        "image": ("still-life.png", sent.image(), "image/png")})
    error = direct.json()["error"]
    assert error["code"] == "too_much_work"
    expect(shown.locator(".error-message")).to_be_hidden()  # the API's words, folded away
    shown.locator("summary").click()
    expect(shown.locator(".error-message")).to_have_text(error["message"])
    expect(shown.locator(".error-code")).to_have_text("too_much_work")
    visit.check(allowed_statuses=(413,))
    found = suggestion.search(warning.inner_text())
    assert found is not None
    resized = httpx.post(f"{small.url}/v1/models/photo-denoiser/denoise", timeout=60, files={
        "image": ("s.png", image_bytes((int(found[1]), int(found[2])), "RGB"), "image/png")})
    assert resized.status_code == 200, resized.text  # the size suggested is served
    page.context.close()


@pytest.fixture(scope="module")
def small_uploads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A service that takes uploads of up to 32 KiB: the 16 KB still life fits, not with noise."""
    folder = only(tmp_path_factory.mktemp("checkpoints"), "photo-denoiser")
    yield from serve(folder, max_body_bytes=32 * 1024)


def test_a_noisy_copy_over_the_upload_limit_is_not_sent(browser: Any, small_uploads: Site) -> None:
    visit = open_page(browser, small_uploads.url)
    page = visit.page
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    page.click("button.example[data-name='still-life.png']")
    warning = page.locator("#denoise-warning")
    expect(warning).to_be_hidden()  # the file itself fits
    page.check("#noise-on")
    page.click("#denoise-run")
    expect(warning).to_contain_text(re.compile(
        r"With noise added, this image is \d+ KiB as a PNG; the service accepts uploads of up to "
        r"32 KiB\. Turn the noise off"))
    expect(page.locator("#denoise-empty")).to_have_text("No result.")
    assert small_uploads.recorder.to("/denoise") == []  # nothing was sent
    page.uncheck("#noise-on")
    page.click("#denoise-run")
    expect(page.locator("#compare")).to_be_visible()
    visit.check()
    page.context.close()


def test_busy_is_told_with_the_wait_the_service_asks_for(browser: Any, small: Site) -> None:
    visit = open_page(browser, small.url)
    page = visit.page
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    body = ('{"error": {"code": "overloaded", "message": "model mnist-dae has about 7.0 s of other '
            'requests\' work ahead of this one (AESERVE_REQUEST_TIMEOUT_S)"}}')
    page.route("**/v1/models/*/denoise*", lambda route: route.fulfill(
        status=503, body=body, content_type="application/json", headers={"Retry-After": "7"}))
    page.click("button.example[data-name='digit-7.png']")
    page.click("#denoise-run")
    shown = page.locator("#denoise-error")
    expect(shown.locator(".error-friendly")).to_have_text(
        "The service is busy with other requests. Try again in 7 s.")
    expect(shown.locator(".error-message")).to_contain_text("AESERVE_REQUEST_TIMEOUT_S")
    expect(page.locator("#service-status")).to_have_class(re.compile(r"\bok\b"))  # busy, not down
    visit.check(allowed_statuses=(503,))
    page.context.close()
