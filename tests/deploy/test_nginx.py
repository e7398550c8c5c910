"""The compose ``proxy`` profile's nginx: its limits sit above the service's, so that the service's own
JSON errors (413, 503 timeout) reach the client, and its own errors are JSON too, not HTML pages.

The last tests run the real nginx (``deploy/nginx.conf``'s server, pointed at a real ``python -m app``)
when ``nginx`` is installed (Debian: ``apt-get install nginx``); skipped without it, unless
``AESERVE_REQUIRE_NGINX=1`` (as ``.ci/run`` sets), which fails instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.settings import Settings
from tests.app.live import (
    START_TIMEOUT_S,
    LiveServer,
    Output,
    free_port,
    read_answer,
    running_server,
    stop_server,
)

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
    assert int(size.group(1)) * UNITS[size.group(2)] > Settings().max_body_bytes  # its 413, not ours


def test_the_proxy_replaces_the_forwarding_headers_a_client_sends() -> None:
    """$remote_addr, not $proxy_add_x_forwarded_for (which appends to what the client sent): the
    service sees the one address nginx vouches for, whatever reads the header."""
    for header in ("X-Forwarded-For", "X-Real-IP"):
        values = re.findall(rf"^\s*proxy_set_header\s+{header}\s+([^;]+);", CONF, re.MULTILINE | re.I)
        assert values == ["$remote_addr"], (header, values)


# what nginx logs at notice (its version) once it has read its configuration and its sockets listen:
# main() logs it right after ngx_init_cycle has opened them, before it writes its pid file and serves
LISTENING = ": nginx/"
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
needs_nginx = pytest.mark.skipif(
    NGINX is None and not os.environ.get("AESERVE_REQUIRE_NGINX"),
    reason="nginx is not installed (apt-get install nginx)")


@pytest.fixture(scope="module")
def proxied(tiny_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[str, LiveServer]]:
    """nginx with deploy/nginx.conf's server in front of a real service: (the proxy's URL, the
    service)."""
    assert NGINX is not None, "nginx is not installed (apt-get install nginx)"
    folder = tmp_path_factory.mktemp("nginx")
    # the access log in JSON, and X-Forwarded-For believed from nginx's address alone, as compose has
    # it (FORWARDED_ALLOW_IPS): nginx reaches the service from 127.0.0.1, the clients below from
    # 127.0.0.2
    with running_server(tiny_checkpoints, folder / "server.log", AESERVE_LOG_LEVEL="info",
                        AESERVE_LOG_FORMAT="json", FORWARDED_ALLOW_IPS="127.0.0.1") as service:
        port = free_port()
        server = (CONF.replace("resolver 127.0.0.11 valid=10s ipv6=off;", "")
                  .replace("listen 8080;", f"listen 127.0.0.1:{port};")
                  .replace("http://api:8000", service.url))
        (folder / "nginx.conf").write_text(
            f"pid {folder}/nginx.pid;\nerror_log stderr notice;\nevents {{}}\n"
            f"http {{\naccess_log off;\nclient_body_temp_path {folder};\nproxy_temp_path {folder};\n"
            f"{server}\n}}\n")
        proc = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"),
                                 "-g", "daemon off; master_process off;"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        watched = Output(proc, folder / "nginx.log")
        try:
            assert watched.wait_for(LISTENING, timeout_s=START_TIMEOUT_S), (
                f"nginx did not start: {watched.text()[-3000:]}")
            # listening: the request waits in the socket's backlog until nginx takes it
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=START_TIMEOUT_S)
            assert ready.status_code == 200, (ready.text, watched.text()[-3000:])
            yield f"http://127.0.0.1:{port}", service
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@needs_nginx
def test_a_body_over_the_services_limit_gets_the_services_json_413(
    proxied: tuple[str, LiveServer]
) -> None:
    url, _ = proxied
    body = bytes(Settings().max_body_bytes + 1024)
    answer = httpx.post(f"{url}/v1/models/mnist-dae/denoise", content=body,
                        headers={"Content-Type": "image/png"}, timeout=60)
    assert answer.status_code == 413 and answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "payload_too_large"
    assert "AESERVE_MAX_BODY_BYTES" in answer.json()["error"]["message"]  # the service's, not nginx's


@needs_nginx
def test_the_proxys_own_413_is_json_in_the_services_shape(proxied: tuple[str, LiveServer]) -> None:
    url, _ = proxied
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:  # a declared 22 MiB
        sock.sendall(b"POST /v1/models/mnist-dae/denoise HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: image/png\r\nContent-Length: 23068672\r\n\r\n")
        status, headers, body = read_answer(sock)
    assert status == 413 and headers["content-type"] == "application/json"
    assert b'"code": "payload_too_large"' in body and b"client_max_body_size" in body


def logged_client(service: LiveServer, path: str) -> str:
    """The client address of the access-log line of ``path`` (written before the answer is sent;
    read from the server's output on a thread of the test's, which may not have got to it yet)."""
    assert service.wait_for(f'"{path}"'), service.output()[-3000:]
    lines = [json.loads(line) for line in service.output().splitlines() if line.startswith("{")]
    clients = [r["client"] for r in lines if r.get("path") == path]
    assert len(clients) == 1, lines[-5:]
    return str(clients[0]).rpartition(":")[0]


@needs_nginx
def test_the_service_logs_the_clients_address_and_no_forged_one(
    proxied: tuple[str, LiveServer]
) -> None:
    url, service = proxied
    forged = {"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.8"}
    # 127.0.0.2: a client whose address differs from the proxy's (127.0.0.1)
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=60) as client:
        assert client.get(f"{url}/v1/models?via=proxy").status_code == 200
        assert client.get(f"{url}/v1/models?via=proxy-forged", headers=forged).status_code == 200
        # straight to the service, which believes X-Forwarded-For from the proxy's address only
        assert client.get(f"{service.url}/v1/models?via=direct-forged", headers=forged).status_code == 200
    assert logged_client(service, "/v1/models?via=proxy") == "127.0.0.2"  # not nginx's 127.0.0.1
    assert logged_client(service, "/v1/models?via=proxy-forged") == "127.0.0.2"
    assert logged_client(service, "/v1/models?via=direct-forged") == "127.0.0.2"


@needs_nginx
def test_no_replica_answering_is_a_json_503_with_retry_after(proxied: tuple[str, LiveServer]) -> None:
    url, service = proxied
    assert httpx.get(f"{url}/readyz", timeout=60).status_code == 200
    stop_server(service)  # the last test of the module: the service is gone
    answer = httpx.get(f"{url}/v1/models", timeout=60)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert answer.json()["error"]["code"] == "unavailable"

