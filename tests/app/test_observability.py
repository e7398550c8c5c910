"""Request ids, log lines that carry them (text and JSON), and tracing of the request stages."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.errors import ClientDisconnected, UnexpectedErrors, install_error_handlers
from app.metrics import Metrics, RequestMetricsMiddleware
from app.observability import (
    JsonFormatter,
    RequestIdFilter,
    RequestIdMiddleware,
    current_request_id,
    log_config,
    record_stage,
    setup_tracing,
    shutdown_tracing,
    stage,
)

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("aeserve.tests.observability")


def make_app() -> FastAPI:
    """A small app with the service's middleware order: request id, [tracing], metrics,
    unexpected errors."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/v1/models/{name}/denoise")
    async def denoise(name: str) -> dict[str, str]:
        log.info("denoising", extra={"model": name})
        with stage("decode"):
            pass
        t0 = time.perf_counter()
        with stage("queue"):
            await asyncio.sleep(0)
        record_stage("batch", t0, time.perf_counter())
        with stage("encode"):
            pass
        return {"request_id": current_request_id()}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/gone")
    async def gone() -> None:
        raise ClientDisconnected()

    app.add_middleware(UnexpectedErrors)
    app.add_middleware(RequestMetricsMiddleware, metrics=Metrics())
    return app


def finish(app: FastAPI) -> FastAPI:
    app.add_middleware(RequestIdMiddleware)
    return app


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """JSON lines of the service's loggers, through the service's filter and formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    service = logging.getLogger("aeserve")
    level = service.level
    service.addHandler(handler)
    service.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        service.removeHandler(handler)
        service.setLevel(level)


# ------------------------------------------------------------------------------------- request id


def test_a_request_id_is_echoed_or_made_and_lasts_the_request() -> None:
    with TestClient(finish(make_app())) as client:
        sent = client.post("/v1/models/m/denoise", headers={"X-Request-ID": "edge-42:a/b"})
        assert sent.headers["x-request-id"] == "edge-42:a/b"
        assert sent.json() == {"request_id": "edge-42:a/b"}

        made = client.post("/v1/models/m/denoise")
        made_id = made.headers["x-request-id"]
        assert uuid.UUID(hex=made_id).version == 4 and uuid.UUID(hex=made_id).hex == made_id
        assert made.json() == {"request_id": made_id}
        assert client.post("/v1/models/m/denoise").headers["x-request-id"] != made_id

        # refused: too long, a space, a control character, empty; each gets a fresh id instead
        for bad in ("x" * 129, "two words", "tab\there", ""):
            answer = client.post("/v1/models/m/denoise", headers={"X-Request-ID": bad})
            assert answer.headers["x-request-id"] != bad
            assert len(answer.headers["x-request-id"]) == 32
        assert client.post("/x", headers={"X-Request-ID": "x" * 128}).headers["x-request-id"] == "x" * 128

        # every answer carries it, errors included, and once
        missing = client.get("/nowhere", headers={"X-Request-ID": "r-404"})
        assert missing.status_code == 404
        assert missing.headers.get_list("x-request-id") == ["r-404"]
    assert current_request_id() == "-"


def test_log_lines_carry_the_request_id_as_json(captured: io.StringIO) -> None:
    with TestClient(finish(make_app())) as client:
        client.post("/v1/models/mnist-dae/denoise", headers={"X-Request-ID": "req-1"})
    log.warning("outside", extra={"attempt": 2, "path": Path("/tmp/x")})
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("failed")

    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    inside, outside, failed = lines
    assert inside["message"] == "denoising"
    assert inside["request_id"] == "req-1"
    assert inside["model"] == "mnist-dae"
    assert inside["level"] == "INFO" and inside["logger"] == "aeserve.tests.observability"
    assert inside["time"].endswith("+00:00")
    assert outside["request_id"] == "-"
    assert outside["attempt"] == 2 and outside["path"] == "/tmp/x"
    assert failed["level"] == "ERROR" and "ValueError: bad value" in failed["exception"]


def test_an_unhandled_error_is_logged_with_its_request_id(captured: io.StringIO) -> None:
    with TestClient(finish(make_app()), raise_server_exceptions=False) as client:
        assert client.get("/boom", headers={"X-Request-ID": "req-500"}).status_code == 500
    (entry,) = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert entry["level"] == "ERROR" and "/boom" in entry["message"]
    assert entry["request_id"] == "req-500"
    assert "RuntimeError: boom" in entry["exception"]


def test_json_access_lines_have_their_fields() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/v1/models/m/denoise", "1.1", 200), None,
    )  # fmt: skip
    RequestIdFilter().filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == '127.0.0.1:5000 - "POST /v1/models/m/denoise HTTP/1.1" 200'
    assert entry["method"] == "POST" and entry["path"] == "/v1/models/m/denoise" and entry["status"] == 200


LOGGING_SCRIPT = """
import logging, logging.config, sys
from fastapi import FastAPI
from fastapi.testclient import TestClient
from app.observability import RequestIdMiddleware, log_config
logging.config.dictConfig(log_config("info", sys.argv[1]))
app = FastAPI()
@app.get("/")
async def root() -> dict[str, str]:
    logging.getLogger("aeserve.routing").info("answering")
    return {}
app.add_middleware(RequestIdMiddleware)
with TestClient(app) as client:
    client.get("/", headers={"X-Request-ID": "abc123"})
logging.getLogger("uvicorn.error").info("started")
access = logging.getLogger("uvicorn.access")
for path, status in (("/readyz", 200), ("/healthz", 200), ("/metrics", 200), ("/readyz", 503),
                     ("/v1/models", 200)):  # probes that succeed are left out
    access.info('%s - "%s %s HTTP/%s" %d', "10.0.0.1:5000", "GET", path, "1.1", status)
logging.getLogger("aeserve").debug("not shown at info")
logging.getLogger("some.library").warning("library warning")
"""


def run_logging(fmt: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AESERVE_")}
    cmd = [sys.executable, "-W", "ignore", "-c", LOGGING_SCRIPT, fmt]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    # the test client's own httpx logger is not ours: it stays at WARNING and prints nothing
    return result.stderr.splitlines()


def test_log_config_writes_one_json_object_per_line() -> None:
    entries = [json.loads(line) for line in run_logging("json")]
    assert [(e["logger"], e["message"], e["request_id"]) for e in entries] == [
        ("aeserve.routing", "answering", "abc123"),
        ("uvicorn.error", "started", "-"),
        ("uvicorn.access", '10.0.0.1:5000 - "GET /readyz HTTP/1.1" 503', "-"),
        ("uvicorn.access", '10.0.0.1:5000 - "GET /v1/models HTTP/1.1" 200', "-"),
        ("some.library", "library warning", "-"),
    ]


def test_log_config_text_lines_show_the_request_id() -> None:
    lines = run_logging("text")
    assert len(lines) == 5
    assert lines[0].endswith(" INFO aeserve.routing [abc123] answering")
    assert lines[1].endswith(" INFO uvicorn.error [-] started")


def test_log_config_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="text or json"):
        log_config("info", "xml")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- tracing


@pytest.mark.parametrize("disabled", ["", "true"])
def test_without_an_endpoint_tracing_is_off(monkeypatch: pytest.MonkeyPatch, disabled: str) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    if disabled:  # an endpoint, but the SDK switched off
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
        monkeypatch.setenv("OTEL_SDK_DISABLED", disabled)
    else:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    app = make_app()
    before = list(app.user_middleware)
    setup_tracing(app)
    assert app.user_middleware == before
    assert stage("decode") is stage("encode")  # one shared do-nothing context manager
    with TestClient(finish(app)) as client:
        assert client.post("/v1/models/m/denoise").status_code == 200


@pytest.fixture
def traced() -> Iterator[tuple[TestClient, object]]:
    pytest.importorskip("opentelemetry.sdk", reason="tracing needs the otel extra (opentelemetry-sdk)")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    app = make_app()
    setup_tracing(app, exporter=exporter)
    with TestClient(finish(app), raise_server_exceptions=False) as client:
        yield client, exporter


def test_traced_requests_have_a_server_span_and_a_child_per_stage(
    traced: tuple[TestClient, object],
) -> None:
    from opentelemetry.trace import SpanKind, StatusCode

    client, exporter = traced
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{trace_id}-00f067aa0ba902b7-01"
    answer = client.post(
        "/v1/models/mnist-dae/denoise", headers={"traceparent": traceparent, "X-Request-ID": "t-1"}
    )
    assert answer.status_code == 200
    spans = {s.name: s for s in exporter.get_finished_spans()}  # type: ignore[attr-defined]
    server = spans.pop("POST /v1/models/{name}/denoise")
    assert server.kind == SpanKind.SERVER
    assert f"{server.context.trace_id:032x}" == trace_id  # continues the caller's trace
    assert server.parent is not None and server.parent.span_id == 0x00F067AA0BA902B7
    assert server.attributes["http.route"] == "/v1/models/{name}/denoise"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["aeserve.request_id"] == "t-1"
    assert server.attributes["aeserve.model"] == "mnist-dae"
    assert server.status.status_code != StatusCode.ERROR
    assert sorted(spans) == ["batch", "decode", "encode", "queue"]
    for child in spans.values():
        assert child.parent is not None and child.parent.span_id == server.context.span_id
        assert child.context.trace_id == server.context.trace_id
        assert server.start_time <= child.start_time <= child.end_time <= server.end_time


@pytest.mark.parametrize(("path", "stages"), [
    ("/v1/models/mnist-dae/denoise", ["batch", "decode", "encode", "probe"]),  # one digit: at once
    ("/v1/models/mnist-dae/denoise?many", ["batch", "decode", "encode", "probe", "queue"]),  # 3 digits
    ("/v1/models/mnist-vae/sample", ["batch", "encode", "parse", "queue"]),  # 16 latents
])
def test_the_service_traces_the_stages_of_its_requests(
    tiny_checkpoints: Path, path: str, stages: list[str]
) -> None:
    """The real app and models: probe, decode, parse, queue, batch and encode each a child of the
    request's span."""
    pytest.importorskip("opentelemetry.sdk", reason="tracing needs the otel extra (opentelemetry-sdk)")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from app.main import create_app
    from tests.app.conftest import make_settings
    from tests.app.helpers import files, image_bytes

    exporter = InMemorySpanExporter()
    app = create_app(make_settings(tiny_checkpoints))
    setup_tracing(app, exporter=exporter)
    with TestClient(app) as client:
        if path.endswith("sample"):
            answer = client.post(path, json={"n": 16, "seed": 0})
        else:
            count = 3 if path.endswith("?many") else 1
            answer = client.post(path.removesuffix("?many"),
                                 files=files(*(image_bytes(seed=i) for i in range(count))))
    assert answer.status_code == 200, answer.text
    spans = exporter.get_finished_spans()
    (server,) = [s for s in spans if s.name.startswith("POST ")]
    children = [s for s in spans if s is not server]
    assert sorted(s.name for s in children) == stages
    for child in children:
        assert child.parent is not None and child.parent.span_id == server.context.span_id
        assert server.start_time <= child.start_time <= child.end_time <= server.end_time


def test_traced_failures_are_marked(traced: tuple[TestClient, object]) -> None:
    from opentelemetry.trace import StatusCode

    client, exporter = traced
    assert client.get("/boom").status_code == 500
    client.get("/gone")  # the app sends nothing; the test client makes up a 500
    spans = {s.name: s for s in exporter.get_finished_spans()}  # type: ignore[attr-defined]
    assert spans["GET /boom"].status.status_code == StatusCode.ERROR
    (event,) = spans["GET /boom"].events  # answered as a 500, the error still on the span
    assert event.name == "exception" and event.attributes["exception.message"] == "boom"
    assert spans["GET /gone"].attributes["http.response.status_code"] == 499
    assert stage("decode") is stage("encode")  # outside a request: no span


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that keeps what it is sent."""

    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_with_an_endpoint_set_spans_are_sent_there_over_otlp_http(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="needs the otel extra")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "aeserve-test")
        app = make_app()
        setup_tracing(app)
        with TestClient(finish(app)) as client:
            assert client.post("/v1/models/m/denoise").status_code == 200
        shutdown_tracing(app)  # sends what is buffered
    finally:
        server.shutdown()
        server.server_close()
    (path, body), *_ = _Collector.received
    assert path == "/v1/traces"
    sent = ExportTraceServiceRequest.FromString(body)
    (resource,) = sent.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
    assert service == "aeserve-test"
    names = {span.name for scope in resource.scope_spans for span in scope.spans}
    assert names == {"POST /v1/models/{name}/denoise", "decode", "queue", "batch", "encode"}


def test_probes_are_logged_at_debug_level() -> None:
    assert log_config("debug")["loggers"]["uvicorn.access"]["filters"] == []
    assert log_config("info")["loggers"]["uvicorn.access"]["filters"] == ["quiet_probes"]
