"""The demo page's test harness: a real uvicorn server in a thread that records every POST it
receives, a browser tab that records its requests and console errors, and small page helpers."""

from __future__ import annotations

import io
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from app.main import create_app
from app.routers import demo
from app.settings import Settings
from tests.app.live import START_TIMEOUT_S

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = Path("/usr/bin/chromium")

# ---- a real server in a thread ------------------------------------------------------------------


@dataclass
class Post:
    path: str
    query: str
    content_type: str
    body: bytes

    def image(self) -> bytes:
        """The (first) ``image`` part of a multipart body."""
        return self.images()[0]

    def images(self) -> list[bytes]:
        boundary = re.search(r"boundary=(\S+)", self.content_type).group(1).encode()  # type: ignore[union-attr]
        found = []
        for part in self.body.split(b"--" + boundary):
            head, _, data = part.partition(b"\r\n\r\n")
            if b'name="image"' in head:
                found.append(data.removesuffix(b"\r\n"))
        return found


class Recorder:
    """An ASGI wrapper that keeps every POST the server receives, body included.

    The browser does not expose a multipart body holding files (Playwright's ``post_data`` is
    empty for them), so the server side is where the page's upload can be read back.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.posts: list[Post] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = dict(scope["headers"])
        self.posts.append(Post(scope["path"], scope["query_string"].decode(),
                               headers.get(b"content-type", b"").decode(), body))
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def to(self, path_part: str) -> list[Post]:
        return [p for p in self.posts if path_part in p.path]


@dataclass
class Site:
    url: str
    recorder: Recorder


class SaysStarted(uvicorn.Server):
    """uvicorn's server, with an event set once its startup has ended, started or not."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_done = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.startup_done.set()


class ThreadServer:
    """A real uvicorn server in a thread, on one port for its life: ``stop`` it and ``start`` it
    again (a fresh app, models loaded anew) and the page finds it where it was. The first start
    binds port 0, the system's pick, itself, and hands uvicorn the socket: a port picked first and
    bound later, once the models have loaded, could be taken in between."""

    def __init__(self, checkpoints: Path | None = None, **overrides: Any) -> None:
        self.settings = Settings(checkpoint_dir=checkpoints or ROOT / "checkpoints", torch_threads=1,
                                 **overrides)
        self.port = 0  # until the first start
        self.url = ""
        self.recorder: Recorder | None = None
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> Site:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the same port after a stop
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(self.settings)
        if not any(getattr(route, "path", None) == "/" for route in app.routes):
            app.include_router(demo.router)
        self.recorder = Recorder(app)
        config = uvicorn.Config(self.recorder, log_level="warning")
        self.server = server = SaysStarted(config)

        def run() -> None:
            try:
                server.run(sockets=[sock])  # uvicorn listens on it, and closes it when it stops
            finally:  # a server that never got as far as its startup
                server.startup_done.set()

        self.thread = thread = threading.Thread(target=run, daemon=True)
        thread.start()
        # models load and warm up before uvicorn says it started
        assert server.startup_done.wait(START_TIMEOUT_S), "the server's startup hung"
        assert server.started, "the server stopped during startup"
        return Site(self.url, self.recorder)

    def stop(self) -> None:
        assert self.server is not None and self.thread is not None
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "the server did not stop"


def serve(checkpoints: Path | None = None, **overrides: Any) -> Iterator[Site]:
    server = ThreadServer(checkpoints, **overrides)
    yield server.start()
    server.stop()


def only(tmp: Path, *names: str) -> Path:
    """A checkpoint folder holding only the named models (links to the shipped ones)."""
    for name in names:
        (tmp / name).symlink_to(ROOT / "checkpoints" / name, target_is_directory=True)
    return tmp


# ---- a browser tab ------------------------------------------------------------------------------


def launch_browser() -> Iterator[Any]:
    """Debian's Chromium, driven by Playwright (the test skips without it)."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


@dataclass
class Visit:
    """One browser tab, with every request and console error it produced."""

    page: Any
    origin: str
    requests: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def check(self, allowed_statuses: tuple[int, ...] = ()) -> None:
        """Nothing left the origin, and no console error but the named HTTP answers."""
        offsite = [
            r.url for r in self.requests
            if not r.url.startswith(self.origin + "/") and not r.url.startswith(("blob:", "data:"))
        ]
        assert not offsite, f"requests left the service's origin: {offsite}"
        expected = re.compile(
            r"Failed to load resource: the server responded with a status of "
            rf"({'|'.join(map(str, allowed_statuses)) or 'none'})\b"
        )
        unexpected = [e for e in self.errors if not expected.search(e)]
        assert not unexpected, f"console errors: {unexpected}"


def open_page(browser: Any, origin: str, width: int = 1360, height: int = 900,
              clock: bool = False) -> Visit:
    """A new tab on ``origin``; ``clock``: with Playwright's clock installed, for the test to move
    the page's timers on."""
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    page = context.new_page()
    if clock:
        page.clock.install()
    visit = Visit(page, origin)
    page.on("request", lambda request: visit.requests.append(request))
    page.on("console", lambda msg: msg.type == "error" and visit.errors.append(msg.text))
    page.on("pageerror", lambda exc: visit.errors.append(f"uncaught: {exc}"))
    page.goto(origin + "/")
    return visit


def ready_visit(browser: Any, site: Site) -> Iterator[Visit]:
    """A tab on ``site`` once the page has its models (the site's recorded posts cleared first),
    closed after the test: the ``visit`` fixture of the demo tests."""
    site.recorder.posts.clear()
    visit = open_page(browser, site.url)
    expect(visit.page.locator("body")).to_have_attribute("data-ready", "true")
    yield visit
    visit.page.context.close()


# ---- helpers ------------------------------------------------------------------------------------


def download(page: Any, selector: str) -> bytes:
    with page.expect_download() as info:
        page.click(selector)
    return Path(info.value.path()).read_bytes()


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a - b) ** 2)))


def set_range(page: Any, selector: str, value: float) -> None:
    page.locator(selector).evaluate(
        "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', {bubbles: true})); }",
        value,
    )
