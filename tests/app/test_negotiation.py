"""Accept negotiation on its own; the routes' use of it is tested through the app (tests/app/routers)."""

from __future__ import annotations

import pytest

from app.errors import ApiError
from app.negotiation import JSON, PNG, negotiate


@pytest.mark.parametrize("accept", [None, "", "  ", ",", " , "])
def test_no_media_range_means_the_routes_default(accept: str | None) -> None:
    assert negotiate(accept, (PNG, JSON)) == PNG
    assert negotiate(accept, (JSON, PNG)) == JSON


@pytest.mark.parametrize(("accept", "offered", "answer"), [
    ("Image/PNG", (JSON, PNG), PNG),  # media types are case-insensitive
    ("*", (JSON, PNG), JSON),  # a lone * (some Java clients) is */*
    ("image/png;q=0.5, application/json;q=0.4", (JSON, PNG), PNG),
    ("image/png;q=0.4, */*;q=0.5", (PNG, JSON), JSON),  # the wildcard's q for JSON is higher
    ("application/*;q=0.2, image/*;q=0.2", (PNG, JSON), PNG),  # a tie: the default
    ("application/*;q=0.2, image/*;q=0.2", (JSON, PNG), JSON),
    ("application/*;q=0.2, image/png;q=0.2", (JSON, PNG), PNG),  # the named type beats a wildcard
    ("image/png;q=0.001, application/json;q=0", (JSON, PNG), PNG),
    ("image/png;Q=1.000, application/json;q=0.999", (JSON, PNG), PNG),
    # a quoted parameter value is one value, whatever commas, semicolons or escapes it holds
    ('text/html;x="a,b", image/png', (JSON, PNG), PNG),
    ('image/png;x="a;q=0", application/json;q=0.5', (JSON, PNG), PNG),
    ('image/png;x="a\\",q=0", application/json;q=0.5', (JSON, PNG), PNG),
    ('text/plain;x="a, image/png", application/json', (PNG, JSON), JSON),
])
def test_the_highest_q_wins_and_a_tie_goes_to_the_default(
    accept: str, offered: tuple[str, ...], answer: str
) -> None:
    assert negotiate(accept, offered) == answer


def test_none_acceptable_is_406_naming_the_offer_and_why() -> None:
    with pytest.raises(ApiError) as refused:
        negotiate("image/png", (JSON,), why="several images are answered as JSON only")
    assert (refused.value.status, refused.value.code) == (406, "not_acceptable")
    assert refused.value.message.endswith(": application/json (several images are answered as JSON only)")


@pytest.mark.parametrize("accept", ["json", "image/png/x", "application/json, png",
                                    "image/png;q=-1, application/json", "image/png;q=abc",
                                    "image/png;q=2", "image/png;q=0.5555", "image/png;q=1.5",
                                    "image/png;q="])
def test_a_range_that_is_not_type_slash_subtype_is_400(accept: str) -> None:
    with pytest.raises(ApiError) as refused:
        negotiate(accept, (PNG, JSON))
    assert (refused.value.status, refused.value.code) == (400, "bad_request")
    assert "Accept" in refused.value.message


@pytest.mark.timeout(30)  # a guard: a pattern that backtracks on an unclosed quote hangs here
def test_an_unclosed_quote_runs_to_the_end_of_the_header() -> None:
    assert negotiate('image/png;x="a, application/json', (JSON, PNG)) == PNG  # JSON is in the quote
    endless = "image/png;x=" + '\\"' * 60_000  # 120 KB of escaped quotes, never closed
    assert negotiate(endless, (JSON, PNG)) == PNG
