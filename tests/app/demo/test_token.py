"""The demo page on a service that asks for an API token, in a real browser against a real server:
the page asks for the token once, remembers it for the tab and sends it with every call; a prompt
dismissed leaves a way to try again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.app.demo.site import open_page, serve

TOKEN = "demo-page-token-42"


@pytest.fixture(scope="module")
def locked_site() -> Iterator[str]:
    yield from (s.url for s in serve(api_token=TOKEN))


def test_the_page_asks_for_the_token_once_and_sends_it(
    browser: Any, locked_site: str, shots: Path
) -> None:
    visit = open_page(browser, locked_site)
    page = visit.page
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    page.fill("#token-input", "wrong")
    page.click("#token-submit")
    refused = httpx.get(f"{locked_site}/v1/models", headers={"Authorization": "Bearer wrong"})
    expect(page.locator("#token-error .error-message")).to_have_text(refused.json()["error"]["message"])
    page.screenshot(path=str(shots / "token.png"))
    page.fill("#token-input", TOKEN)
    page.click("#token-submit")
    expect(dialog).to_be_hidden()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#service-status")).to_contain_text("3 models")
    assert page.evaluate("sessionStorage.getItem('aeserve.token')") == TOKEN

    page.reload()  # same tab: the token is remembered, no second question
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(dialog).to_be_hidden()
    page.click("#tab-vae")
    page.click("#sample-run")
    expect(page.locator("#sample-figure")).to_be_visible()
    api_calls = [r for r in visit.requests if "/v1/" in r.url]
    last = api_calls[-2:]  # after the reload: the model list and the samples
    assert all(r.all_headers().get("authorization") == f"Bearer {TOKEN}" for r in last)
    assert sum(r.all_headers().get("authorization") is None for r in api_calls) == 1  # only the first
    visit.check(allowed_statuses=(401,))
    page.context.close()


def test_a_dismissed_token_prompt_leaves_a_way_to_try_again(browser: Any, locked_site: str) -> None:
    visit = open_page(browser, locked_site)
    page = visit.page
    expect(page.locator("#token-dialog")).to_be_visible()
    page.keyboard.press("Escape")  # no token: the page says why and offers another try
    expect(page.locator("#global-error .error-code")).to_have_text("unauthorized")
    page.click("#retry-button")
    expect(page.locator("#token-dialog")).to_be_visible()
    page.click("#token-cancel")  # the dialog's own Cancel does as Escape does
    expect(page.locator("#token-dialog")).to_be_hidden()
    page.click("#retry-button")
    expect(page.locator("#token-dialog")).to_be_visible()
    page.fill("#token-input", TOKEN)
    page.click("#token-submit")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#retry-button")).to_be_hidden()
    expect(page.locator("#global-error")).to_be_hidden()
    visit.check(allowed_statuses=(401,))
    page.context.close()
