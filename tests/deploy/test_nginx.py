"""The compose ``proxy`` profile's nginx: its limits sit above the service's, so that the service's own
JSON errors (413, 503 timeout) reach the client instead of nginx's HTML pages."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

CONF = (Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf").read_text()
UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def directive(name: str) -> str:
    match = re.search(rf"^\s*{name}\s+([^;]+);", CONF, re.MULTILINE)
    assert match, f"{name} is not set in deploy/nginx.conf"
    return match.group(1).strip()


def test_the_proxy_waits_longer_than_the_request_timeout() -> None:
    value = directive("proxy_read_timeout")
    assert value.endswith("s")
    assert float(value[:-1]) > Settings().request_timeout_s


def test_the_proxy_takes_every_body_the_service_takes() -> None:
    size = re.fullmatch(r"(\d+)([kmg]?)", directive("client_max_body_size").lower())
    assert size, "client_max_body_size is not a size"
    assert int(size.group(1)) * UNITS[size.group(2)] >= Settings().max_body_bytes
