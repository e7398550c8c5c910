"""End to end: ``python -m app`` as a real process on a free port, driven with httpx."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.helpers import decode_png, files, image_bytes, png_claiming
from tests.app.live import ROOT, LiveServer, running_server, server_env, wire

TOKEN = "e2e-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# one score of 8 digits with k=1000 costs 6.27827 of these megapixel-equivalents (8 x (784 + 1000 x
# 784) units) and takes seconds: beside it, a score of one more digit (0.785) does not fit
SCORE_IMAGES = 8
WORK = "6.3"


@pytest.fixture(scope="module")
def live(tiny_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The server, at debug: it logs each request's admission."""
    log = tmp_path_factory.mktemp("e2e") / "server.log"
    with running_server(
        tiny_checkpoints, log, AESERVE_API_TOKEN=TOKEN, AESERVE_MAX_BODY_BYTES="262144",
        AESERVE_MAX_WORK=WORK, AESERVE_QUEUE_WORK=WORK, AESERVE_LOG_LEVEL="debug",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def server(live: LiveServer) -> str:
    return live.url


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_every_endpoint(server: str) -> None:
    with httpx.Client(base_url=server, headers=AUTH, timeout=60) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").status_code == 200
        assert "aeserve_model_load_seconds" in http.get("/metrics").text
        assert len(http.get("/v1/models").json()["models"]) == 2
        assert http.get("/v1/models/mnist-dae").json()["latent_dim"] == 128
        png = http.post("/v1/models/mnist-dae/denoise", files=files(image_bytes()))
        assert decode_png(png.content).size == (28, 28)
        raw = http.post(
            "/v1/models/mnist-vae/denoise", content=image_bytes(mode="RGB"),
            headers={"content-type": "image/png"},
        )
        assert decode_png(raw.content).mode == "RGB"
        enc = http.post("/v1/models/mnist-vae/encode", params={"sample": "true", "seed": 1},
                        files=files(image_bytes()))
        assert set(enc.json()["results"][0]) == {"mu", "sigma", "logvar", "z"}
        dec = http.post("/v1/models/mnist-vae/decode", json={"z": [[0.0] * 32]})
        assert len(dec.json()["images"]) == 1
        one = http.post("/v1/models/mnist-vae/sample", json={"n": 16, "seed": 0})
        two = http.post("/v1/models/mnist-vae/sample", json={"n": 16, "seed": 0})
        assert one.json()["images"] == two.json()["images"] and len(one.json()["images"]) == 16
        score = http.post("/v1/models/mnist-vae/score", params={"k": 10}, files=files(image_bytes()))
        assert score.json()["results"][0]["nll"] > 0
        path = http.post("/v1/models/mnist-vae/interpolate",
                         json={"z": [[0.0] * 32, [1.0] * 32], "steps": 3})
        assert len(path.json()["images"]) == 3


def test_each_error_case(server: str) -> None:
    with httpx.Client(base_url=server, headers=AUTH, timeout=60) as http:
        def code(response: httpx.Response) -> tuple[int, str]:
            return response.status_code, response.json()["error"]["code"]

        assert code(http.get("/v1/models/nope")) == (404, "unknown_model")
        assert code(http.post("/v1/models/mnist-dae/sample", json={"n": 1})) == (
            422, "unsupported_operation")
        assert code(http.post("/v1/models/mnist-dae/denoise", files=files(b"nope"))) == (
            415, "unsupported_media_type")
        big = http.post("/v1/models/mnist-dae/denoise", content=b"\0" * 300_000,
                        headers={"content-type": "image/png"})
        assert code(big) == (413, "payload_too_large")
        bomb = http.post("/v1/models/mnist-dae/denoise", files=files(png_claiming(30000, 30000)))
        assert code(bomb) == (413, "too_many_pixels")
        wrong = http.post("/v1/models/mnist-dae/denoise", files=files(image_bytes(size=(32, 32))))
        assert code(wrong)[0] == 422 and "28x28" in wrong.json()["error"]["message"]
        nan = http.post("/v1/models/mnist-vae/decode", content='{"z": [[NaN' + ",0" * 31 + "]]}",
                        headers={"content-type": "application/json"})
        assert code(nan) == (422, "invalid_latent")
        short = http.post("/v1/models/mnist-vae/decode", json={"z": [[0.0] * 5]})
        assert code(short) == (422, "invalid_latent")
        assert code(http.post("/v1/models/mnist-vae/sample", json={"n": 100_000}))[0] == 422
        k = http.post("/v1/models/mnist-vae/score", params={"k": 10**6}, files=files(image_bytes()))
        assert code(k) == (422, "limit_exceeded")
    anonymous = httpx.get(f"{server}/v1/models", timeout=10)
    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "unauthorized")
    wrong_token = httpx.get(f"{server}/v1/models", headers={"Authorization": "Bearer x"}, timeout=10)
    assert wrong_token.status_code == 401
    assert httpx.get(f"{server}/readyz", timeout=10).status_code == 200  # open without a token


async def _burst(server: str, model: str, n: int) -> list[httpx.Response]:
    data = image_bytes()
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=server, headers=AUTH, timeout=60, limits=limits) as http:
        return list(await asyncio.gather(*[
            http.post(f"/v1/models/{model}/denoise", files=files(data)) for _ in range(n)
        ]))


def test_a_burst_of_concurrent_requests_is_batched(server: str) -> None:
    before = httpx.get(f"{server}/metrics").text
    responses = asyncio.run(_burst(server, "mnist-dae", 48))
    assert {r.status_code for r in responses} <= {200, 503}
    assert all("retry-after" in r.headers for r in responses if r.status_code == 503)
    assert sum(r.status_code == 200 for r in responses) >= 16
    after = httpx.get(f"{server}/metrics").text
    rows = metric(after, "aeserve_batch_size_sum", model="mnist-dae") - metric(
        before, "aeserve_batch_size_sum", model="mnist-dae")
    batches = metric(after, "aeserve_batch_size_count", model="mnist-dae") - metric(
        before, "aeserve_batch_size_count", model="mnist-dae")
    assert rows >= 16 and batches < rows  # fewer forwards than images: requests shared batches
    assert metric(after, "aeserve_requests_total", route="/v1/models/{name}/denoise",
                  model="mnist-dae", status="200") >= 16


def test_work_over_the_queue_budget_answers_503_with_retry_after(live: LiveServer) -> None:
    """A score that holds nearly all of the model's budget for seconds: once the server has logged
    its admission, a request that does not fit beside it is refused at once. The score's client
    then leaves, which stops it: the test waits for no model work, whatever the machine's speed."""
    held = httpx.Request(
        "POST", f"{live.url}/v1/models/mnist-vae/score", params={"k": 1000},
        files=files(*[image_bytes(seed=i) for i in range(SCORE_IMAGES)]),
        headers={**AUTH, "X-Request-ID": "e2e-held-score"},
    )
    with socket.create_connection(("127.0.0.1", live.port), timeout=60) as sock:
        sock.sendall(wire(held))
        assert live.wait_for("[e2e-held-score] mnist-vae admitted"), live.output()[-3000:]
        refused = httpx.post(f"{live.url}/v1/models/mnist-vae/score", params={"k": 1000},
                             files=files(image_bytes()), headers=AUTH, timeout=60)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded"
    assert "AESERVE_QUEUE_WORK" in refused.json()["error"]["message"]  # by its work, not its wait
    assert int(refused.headers["retry-after"]) >= 1
    # the held score's client left before its answer: the score stopped, its work given back
    assert live.wait_for("[e2e-held-score] client went away: POST /v1/models/mnist-vae/score")


def run_app(checkpoints: Path) -> subprocess.CompletedProcess[str]:
    env = server_env(checkpoints, 0)  # port 0: the system's pick (it stops before serving)
    return subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_a_corrupt_checkpoint_stops_startup_with_one_line(
    tiny_checkpoints: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, broken)
    weights = broken / "mnist-vae" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100:] = bytes(100)
    weights.write_bytes(bytes(data))
    result = run_app(broken)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert re.search(r"mnist-vae.*model\.safetensors.*sha256 mismatch", lines[0]), lines[0]


def test_a_missing_weights_file_stops_startup_with_one_line(
    tiny_checkpoints: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, broken)
    (broken / "mnist-dae" / "model.safetensors").unlink()
    result = run_app(broken)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "mnist-dae" in lines[0] and "model.safetensors" in lines[0] and "missing" in lines[0]


def test_python_client_against_the_server(server: str) -> None:
    from app.client import AeserveError, Client

    with Client(server, token=TOKEN) as client:
        assert client.ready()
        assert [m["name"] for m in client.models()] == ["mnist-dae", "mnist-vae"]
        assert decode_png(client.denoise("mnist-dae", image_bytes())).size == (28, 28)
        assert len(client.denoise_many("mnist-dae", [image_bytes(), image_bytes(seed=1)])) == 2
        codes = client.encode("mnist-vae", [image_bytes()])
        assert len(codes[0]["mu"]) == 32
        drawn = client.encode_answer("mnist-vae", [image_bytes()], sample=True)  # the service's seed
        again = client.encode_answer("mnist-vae", [image_bytes()], sample=True, seed=drawn["seed"])
        assert again["results"][0]["z"] == drawn["results"][0]["z"]
        assert client.denoise_with_sigma("mnist-dae", image_bytes())[1] is None
        assert len(client.decode("mnist-vae", [codes[0]["mu"]])) == 1
        assert client.sample("mnist-vae", n=3, seed=1) == client.sample("mnist-vae", n=3, seed=1)
        drawn_pngs, seed = client.sample_with_seed("mnist-vae", n=2)  # the seed the service drew
        assert client.sample("mnist-vae", n=2, seed=seed) == drawn_pngs
        grid = client.grid_answer("mnist-vae", "sample", {"n": 4})
        assert grid.png == client.grid("mnist-vae", "sample", {"n": 4, "seed": grid.seed})
        path = client.interpolate_images("mnist-dae", image_bytes(seed=1), image_bytes(seed=2), steps=4)
        assert path.steps == 4 and decode_png(path.png).size == (58, 58)
        assert len(client.interpolate("mnist-vae", [0.0] * 32, [1.0] * 32, steps=4)) == 4
        assert client.score("mnist-vae", [image_bytes()], k=5)[0]["nll"] > 0
        with pytest.raises(AeserveError) as err:
            client.sample("mnist-dae", n=1)
        assert (err.value.status, err.value.code) == (422, "unsupported_operation")


def test_command_line_client(server: str, tmp_path: Path) -> None:
    noisy = tmp_path / "noisy.png"
    noisy.write_bytes(image_bytes())
    common = ["--url", server, "--token", TOKEN]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app.client", *args, *common], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False)

    assert cli("denoise", str(noisy), "-o", str(tmp_path / "clean.png")).returncode == 0
    assert decode_png((tmp_path / "clean.png").read_bytes()).size == (28, 28)
    assert cli("sample", "-n", "4", "--seed", "0", "-o", str(tmp_path / "s.png")).returncode == 0
    assert decode_png((tmp_path / "s.png").read_bytes()).size == (58, 58)
    drawn = cli("sample", "-n", "4", "-o", str(tmp_path / "drawn.png"))  # says the seed it drew
    seed = re.fullmatch(r"seed: (\d+)", drawn.stderr.strip())
    assert drawn.returncode == 0 and seed, drawn.stderr
    assert cli("sample", "-n", "4", "--seed", seed[1], "-o", str(tmp_path / "again.png")).returncode == 0
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "drawn.png").read_bytes()
    scored = cli("score", str(noisy), str(noisy), "-k", "5")  # prints the seed the service drew
    assert scored.returncode == 0 and len(json.loads(scored.stdout)["results"]) == 2
    drawn_seed = json.loads(scored.stdout)["seed"]
    again = cli("score", str(noisy), str(noisy), "-k", "5", "--seed", str(drawn_seed))
    assert json.loads(again.stdout) == json.loads(scored.stdout)
    other = tmp_path / "other.png"
    other.write_bytes(image_bytes(seed=3))
    assert cli("interpolate", str(noisy), str(other), "--steps", "4", "--model", "mnist-dae",
               "-o", str(tmp_path / "path.png")).returncode == 0
    assert decode_png((tmp_path / "path.png").read_bytes()).size == (58, 58)
    encoded = cli("encode", str(noisy))
    assert encoded.returncode == 0
    sampled = json.loads(cli("encode", str(noisy), "--sample").stdout)
    assert isinstance(sampled["seed"], int) and len(sampled["results"][0]["z"]) == 32
    (tmp_path / "z.json").write_text(encoded.stdout)
    assert cli("decode", str(tmp_path / "z.json"), "-o", str(tmp_path / "d.png")).returncode == 0
    assert decode_png((tmp_path / "d.png").read_bytes()).size == (28, 28)
    refused = cli("sample", "--model", "mnist-dae", "-o", str(tmp_path / "x.png"))
    assert refused.returncode == 1 and "unsupported_operation" in refused.stderr


def test_an_invalid_setting_stops_startup_with_one_line(tiny_checkpoints: Path) -> None:
    env = server_env(tiny_checkpoints, 0, AESERVE_MAX_BATCH_SIZE="many")
    result = subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "AESERVE_MAX_BATCH_SIZE" in lines[0]


def test_clients_report_the_noise_sigma_a_photo_model_used(
    tiny_photo_checkpoint: Path, tmp_path: Path
) -> None:
    from app.client import Client

    noisy = tmp_path / "photo.png"
    noisy.write_bytes(image_bytes((64, 48)))
    with running_server(tiny_photo_checkpoint, tmp_path / "server.log") as live:
        with Client(live.url) as client:
            png, given = client.denoise_with_sigma("photo-denoiser", noisy.read_bytes(), sigma=25)
            assert given == 25.0 and decode_png(png).size == (64, 48)
            _, estimated = client.denoise_with_sigma("photo-denoiser", noisy.read_bytes())
            assert estimated is not None and estimated > 0  # uniform noise: far from clean
        result = subprocess.run([sys.executable, "-m", "app.client", "denoise", str(noisy), "-o",
                                 str(tmp_path / "clean.png"), "--model", "photo-denoiser",
                                 "--url", live.url], cwd=ROOT, capture_output=True, text=True,
                                timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"noise sigma: {estimated:g} (estimated)"
