"""Tracing of the request stages: a server span per request, a child per stage, sent over OTLP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient

from app.tracing import setup_tracing, shutdown_tracing, stage
from tests.app.test_request_ids import finish, make_app


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
