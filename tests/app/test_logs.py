"""Log lines that carry the request id, as text and as JSON; probes kept out of the access log."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.logs import JsonFormatter, RequestIdFilter, log_config
from tests.app.test_request_ids import finish, log, make_app

ROOT = Path(__file__).resolve().parents[2]


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
    assert inside["level"] == "INFO" and inside["logger"] == "aeserve.tests.request_ids"
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
from app.logs import log_config
from app.request_ids import RequestIdMiddleware
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


def test_probes_are_logged_at_debug_level() -> None:
    assert log_config("debug")["loggers"]["uvicorn.access"]["filters"] == []
    assert log_config("info")["loggers"]["uvicorn.access"]["filters"] == ["quiet_probes"]
