"""Metrics: one app's own numbers in one process; the totals of every worker with several."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import ClientDisconnect
from starlette.types import Message

from app.errors import ClientDisconnected, install_error_handlers
from app.metrics import MULTIPROC_ENV, Metrics, RequestMetricsMiddleware, prepare_multiprocess
from tests.app.helpers import image_bytes
from tests.app.live import LISTENING

ROOT = Path(__file__).resolve().parents[2]
DENOISE_ROUTE = "/v1/models/{name}/denoise"


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


# ------------------------------------------------------------------------------------ one process


def test_each_metrics_object_keeps_its_own_numbers() -> None:
    first, second = Metrics(), Metrics()
    assert first.multiprocess_dir is None
    m = first.for_model("mnist-dae")
    m.rejected("overloaded").inc()
    m.rejected("overloaded").inc()
    m.rejected("draining").inc()
    m.queued_requests.inc()
    m.queued_requests.inc()
    m.queued_requests.dec()
    m.queued_work.inc(16)
    m.cancelled.inc()
    m.expired.inc()
    m.load_seconds.set(1.5)
    first.count_load("mnist-dae", "ok")
    m.batch_size.observe(4)
    first.requests.labels("/r", "mnist-dae", "200").inc()

    text = first.render().decode()
    dae = {"model": "mnist-dae"}
    assert sample(text, "aeserve_queue_rejected_total", reason="overloaded", **dae) == 2
    assert sample(text, "aeserve_queue_rejected_total", reason="draining", **dae) == 1
    assert sample(text, "aeserve_queue_depth", **dae) == 1
    assert sample(text, "aeserve_queue_work", **dae) == 16
    assert sample(text, "aeserve_requests_cancelled_total", **dae) == 1
    assert sample(text, "aeserve_requests_expired_total", **dae) == 1
    assert sample(text, "aeserve_model_load_seconds", **dae) == 1.5
    assert sample(text, "aeserve_model_loads_total", result="ok", **dae) == 1
    assert 'aeserve_model_loads_total{model="mnist-dae",result="refused"} 0.0' in text
    assert sample(text, "aeserve_batch_size_count", **dae) == 1
    assert sample(text, "aeserve_requests_total", route="/r") == 1

    assert "mnist-dae" not in second.render().decode()
    first.close()  # nothing to mark in one process


def test_the_startup_load_of_each_model_counts_as_a_load(client: TestClient) -> None:
    text = client.get("/metrics").text
    for name in ("mnist-dae", "mnist-vae"):
        assert sample(text, "aeserve_model_loads_total", model=name, result="ok") == 1, name
        assert sample(text, "aeserve_model_loads_total", model=name, result="refused") == 0, name


def test_a_request_refused_before_routing_counts_under_the_route_it_was_for(
    app_with: Callable[..., TestClient],
) -> None:
    client = app_with(max_body_bytes=4096)
    big = image_bytes(mode="RGBA") * 4
    for method, path in [("POST", "/v1/models/mnist-dae/denoise"),
                         ("PUT", "/v1/models/mnist-dae/denoise"),  # the path's route, not its method
                         ("POST", "/v1/models/no-such-model/denoise"), ("POST", "/nowhere/at/all")]:
        refused = client.request(method, path, content=big, headers={"content-type": "image/png"})
        assert refused.status_code == 413, path  # by Content-Length, in the middleware: no route ran

    text = client.get("/metrics").text
    assert sample(text, "aeserve_requests_total", route=DENOISE_ROUTE, model="mnist-dae", status="413") == 2
    assert sample(text, "aeserve_requests_total", route=DENOISE_ROUTE, model="unknown", status="413") == 1
    assert sample(text, "aeserve_requests_total", route="unmatched", model="", status="413") == 1
    assert "/nowhere" not in text and "no-such-model" not in text


def test_a_cors_preflight_counts_as_a_preflight_not_as_an_answer_of_its_route(
    app_with: Callable[..., TestClient],
) -> None:
    client = app_with(cors_origins=["https://app.example"])
    asked = {"origin": "https://app.example", "access-control-request-method": "POST",
             "access-control-request-headers": "authorization"}
    assert client.options("/v1/models/mnist-dae/denoise", headers=asked).status_code == 200
    text = client.get("/metrics").text
    assert sample(text, "aeserve_requests_total", route="preflight", status="200") == 1
    assert sample(text, "aeserve_requests_total", route=DENOISE_ROUTE) == 0


def test_prepare_multiprocess_makes_and_removes_a_directory_only_for_several_workers(
    tmp_path: Path,
) -> None:
    before = os.environ.get(MULTIPROC_ENV)
    with prepare_multiprocess(1, root=tmp_path) as nothing:
        assert nothing is None
        assert os.environ.get(MULTIPROC_ENV) == before
    with prepare_multiprocess(3, root=tmp_path) as path:
        assert path is not None and Path(path).is_dir() and Path(path).parent == tmp_path
        assert os.environ[MULTIPROC_ENV] == path
        # prometheus_client was imported before the variable: this process stays single-process
        assert Metrics().multiprocess_dir is None
    assert not Path(path).exists()
    assert os.environ.get(MULTIPROC_ENV) == before


# ------------------------------------------------------------------------------------ client gone


def _app_that_loses_its_client(metrics: Metrics) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)  # its catch-all handler must not turn a disconnect into a 500

    @app.post("/v1/models/{name}/upload")
    async def upload(name: str, request: Request) -> dict[str, str]:
        raise ClientDisconnect()  # what Starlette raises when the body stops mid-upload

    @app.post("/v1/models/{name}/wait")
    async def wait(name: str) -> dict[str, str]:
        raise ClientDisconnected()  # what the service raises when it sees the client gone

    @app.get("/ok")
    async def ok() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    return app


def test_an_answer_is_counted_before_its_last_part_reaches_the_client() -> None:
    metrics = Metrics()
    app = _app_that_loses_its_client(metrics)
    seen_by_client: list[float] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:  # the client's side: what a scrape says meanwhile
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            seen_by_client.append(sample(metrics.render().decode(), "aeserve_requests_total",
                                         route="/ok", status="200"))

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/ok", "raw_path": b"/ok", "root_path": "", "query_string": b"",
             "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    assert seen_by_client == [1.0]
    assert sample(metrics.render().decode(), "aeserve_request_duration_seconds_count", route="/ok") == 1


def test_a_client_that_went_away_counts_as_499_with_one_line_and_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    metrics.for_model("mnist-dae")
    app = _app_that_loses_its_client(metrics)
    caplog.set_level(logging.DEBUG)
    with TestClient(app, raise_server_exceptions=True) as client:
        # nothing is sent for a disconnect; the test client reports that as a missing response
        for path in ("/v1/models/mnist-dae/upload", "/v1/models/mnist-dae/wait"):
            with pytest.raises(AssertionError):
                client.post(path)
        assert client.get("/ok").status_code == 200

    text = metrics.render().decode()
    for route in ("/v1/models/{name}/upload", "/v1/models/{name}/wait"):
        assert sample(text, "aeserve_requests_total", route=route, model="mnist-dae", status="499") == 1
        assert sample(text, "aeserve_request_duration_seconds_count", route=route, status="499") == 1
    assert sample(text, "aeserve_requests_total", status="500") == 0
    assert sample(text, "aeserve_requests_total", route="/ok", status="200") == 1

    gone = [r for r in caplog.records if "client went away" in r.getMessage()]
    assert len(gone) == 2
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in gone)
    assert "POST /v1/models/mnist-dae/wait model=mnist-dae after" in gone[1].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


# ---------------------------------------------------- several processes sharing one directory

WORKER = """
import os, sys
from app.metrics import Metrics
metrics = Metrics()
assert metrics.multiprocess_dir == os.environ["PROMETHEUS_MULTIPROC_DIR"]
queued, load, answered, end = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
m = metrics.for_model("mnist-dae")
m.queued_requests.inc(queued)
m.load_seconds.set(load)
metrics.count_load("mnist-dae", "ok")
for _ in range(answered):
    metrics.requests.labels("/v1/models/{name}/denoise", "mnist-dae", "200").inc()
if end == "render":
    sys.stdout.write(metrics.render().decode())
elif end == "close":
    metrics.close()
"""


def run_worker(directory: Path, queued: int, load: float, answered: int, end: str) -> str:
    env = {**os.environ, MULTIPROC_ENV: str(directory)}
    cmd = [sys.executable, "-c", WORKER, str(queued), str(load), str(answered), end]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_multiprocess_mode_sums_counters_of_all_workers_and_gauges_of_live_ones(tmp_path: Path) -> None:
    run_worker(tmp_path, queued=3, load=9.0, answered=7, end="close")  # a worker that shut down
    run_worker(tmp_path, queued=4, load=8.0, answered=5, end="exit")  # one killed: never closed
    text = run_worker(tmp_path, queued=2, load=1.0, answered=11, end="render")  # alive, scraped
    dae = {"model": "mnist-dae"}
    assert sample(text, "aeserve_requests_total", route=DENOISE_ROUTE, **dae) == 7 + 5 + 11
    assert sample(text, "aeserve_model_loads_total", result="ok", **dae) == 3
    assert sample(text, "aeserve_queue_depth", **dae) == 2  # only the live worker's queue
    assert sample(text, "aeserve_model_load_seconds", **dae) == 1.0  # the live worker's load


# ------------------------------------------------------------------- the real server, 2 workers


def wait_until_both_workers_serve(proc: subprocess.Popen[bytes], log: Path) -> str:
    """Both workers have finished startup (a worker takes connections only then) and /readyz is
    200; the server's URL, on the port its log says it listens on."""
    deadline = time.monotonic() + 180
    while True:
        try:
            code = proc.wait(timeout=0.2)  # the poll's pace, and a server that stops ends the wait
        except subprocess.TimeoutExpired:
            pass
        else:
            pytest.fail(f"the server exited with {code}:\n{log.read_text()[-3000:]}")
        text = log.read_text(errors="replace")
        listening = LISTENING.search(text)
        if listening and text.count("Application startup complete") >= 2:
            url = f"http://127.0.0.1:{listening[1]}"
            try:
                if httpx.get(f"{url}/readyz", timeout=30).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
        assert time.monotonic() < deadline, "two workers not ready within 180 s:\n" + log.read_text()[-3000:]


def requests_by_worker(directory: Path) -> list[float]:
    """Each worker's own count of answered denoise requests, from its file in the shared directory."""
    counts = []
    for path in sorted(directory.glob("counter_*.db")):
        metrics = MultiProcessCollector.merge([str(path)], accumulate=False)
        counts.append(
            sum(
                s.value
                for family in metrics
                for s in family.samples
                if s.name == "aeserve_requests_total" and s.labels.get("route") == DENOISE_ROUTE
            )
        )
    return counts


@pytest.fixture
def two_worker_server(tiny_checkpoints: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``python -m app`` with AESERVE_WORKERS=2; yields its URL and its metrics directory. On port
    0, the system's pick, read back from the log: a port picked here could be taken before it binds."""
    log = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AESERVE_") and k != MULTIPROC_ENV}
    env.update(
        AESERVE_CHECKPOINT_DIR=str(tiny_checkpoints),
        AESERVE_PORT="0",
        AESERVE_WORKERS="2",
        AESERVE_LOG_LEVEL="info",
        AESERVE_TORCH_THREADS="1",
        TMPDIR=str(tmp_path),  # where the service makes its metrics directory
    )
    with log.open("wb") as out:  # the server makes its own metrics directory under TMPDIR
        proc = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            url = wait_until_both_workers_serve(proc, log)
            (directory,) = tmp_path.glob("aeserve-metrics-*")
            yield url, directory
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) in (0, -signal.SIGTERM), log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    assert not list(tmp_path.glob("aeserve-metrics-*")), "the metrics directory outlived the server"


def test_every_scrape_of_two_workers_reports_the_total(two_worker_server: tuple[str, Path]) -> None:
    url, directory = two_worker_server
    image = image_bytes(seed=3)

    def denoise(_: int) -> int:  # a fresh connection each time, so either worker may take it
        files = {"image": ("digit.png", image, "image/png")}
        return httpx.post(f"{url}/v1/models/mnist-dae/denoise", files=files, timeout=60).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(denoise, range(60)))
    assert statuses == [200] * 60

    by_worker = requests_by_worker(directory)
    assert sum(by_worker) == 60
    assert len(by_worker) == 2 and min(by_worker) > 0, f"one worker answered everything: {by_worker}"

    for _ in range(6):
        text = httpx.get(f"{url}/metrics", timeout=30).text
        assert sample(text, "aeserve_requests_total", route=DENOISE_ROUTE, status="200") == 60
        assert sample(text, "aeserve_request_duration_seconds_count", route=DENOISE_ROUTE) == 60
        assert sample(text, "aeserve_queue_depth", model="mnist-dae") == 0  # one series, both workers
        assert sample(text, "aeserve_model_load_seconds", model="mnist-dae") > 0
