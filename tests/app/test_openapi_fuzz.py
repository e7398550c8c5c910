"""A schema-driven fuzz of ``/openapi.json`` (schemathesis) against a real server, with and without
an API token: no server error, and every status code, content type and body the schema documents.

Bounded (a few examples per operation) and derandomized, so it runs the same cases every time. The
same run against any live server, from the command line (docs/serving.md)::

    schemathesis run http://127.0.0.1:8000/openapi.json \\
        --checks not_a_server_error,status_code_conformance,content_type_conformance,\\
response_schema_conformance --max-examples 20 --seed 0 [-H "Authorization: Bearer $AESERVE_API_TOKEN"]
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from tests.app.live import LiveServer, running_server

TOKEN = "fuzz-token-0123"
MODELS = ("mnist-dae", "mnist-vae")
EXAMPLES = 8  # per operation and generation mode
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module", params=["open", "token"])
def live_api(
    request: pytest.FixtureRequest, tiny_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    token = request.param == "token"
    env = {"AESERVE_API_TOKEN": TOKEN} if token else {}
    log = tmp_path_factory.mktemp(f"fuzz-{request.param}") / "server.log"
    with running_server(tiny_checkpoints, log, AESERVE_MAX_K="50", AESERVE_DEFAULT_K="10",
                        AESERVE_MAX_N="16", **env) as live:
        yield live, ({"Authorization": f"Bearer {TOKEN}"} if token else {})


def operations(url: str) -> list[Any]:
    loaded = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in loaded.get_all_operations()]


def fuzz(operation: Any, mode: GenerationMode, live: LiveServer, auth: dict[str, str],
         path: dict[str, str]) -> None:
    """Run the bounded, derandomized examples of one operation; raise on the first failure."""

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path or None))
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=live.url, headers=auth, checks=CHECKS)

    run()


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_the_api_answers_as_its_schema_says(
    live_api: tuple[LiveServer, dict[str, str]], mode: GenerationMode
) -> None:
    live, auth = live_api
    failures = []
    for operation in operations(live.url):
        # a free model name is nearly always 404: also fuzz each real model's operations
        names = [{}, *({"name": m} for m in MODELS)] if "{name}" in operation.path else [{}]
        for path in names:
            try:
                fuzz(operation, mode, live, auth, path)
            except Unsatisfiable:  # no parameter to make invalid (negative mode): nothing to send
                continue
            except Exception as exc:  # every operation runs; the failures are listed together
                failures.append(f"{operation.label} {path}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert "Traceback" not in live.output()
    text = httpx.get(f"{live.url}/metrics", timeout=30).text
    answered = {line.split('status="')[1][:3] for line in text.splitlines()
                if line.startswith("aeserve_requests_total{") and "/v1/models/{name}/" in line}
    assert "200" in answered and len(answered) >= 3  # the fuzz reached the models, not only 404s
