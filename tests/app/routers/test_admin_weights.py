"""``POST /v1/admin/reload`` on a real server after the documented folder swap brought corrupt
weights with an unchanged config.json: refused, naming the model and the file, while the old
model serves on (a restart would refuse that folder; the reload says so now)."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from tests.app.helpers import files, image_bytes
from tests.app.live import LiveServer
from tests.app.routers.conftest import AUTH
from tests.app.routers.test_admin import DENOISE, card, replace_folder


def weights_corrupted(source: Path, to: Path) -> Path:
    """A copy of ``source`` whose weights no longer match the sha256 that its config.json, copied
    as it is, pins."""
    shutil.copytree(source, to)
    weights = to / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8] ^= 0xFF
    weights.write_bytes(bytes(data))
    return to


def test_corrupt_weights_with_an_unchanged_config_are_refused_and_the_old_model_serves_on(
    server: LiveServer, checkpoints: Path, tmp_path: Path
) -> None:
    folder = checkpoints / "mnist-dae"
    corrupt = weights_corrupted(folder, tmp_path / "corrupt")
    assert (corrupt / "config.json").read_bytes() == (folder / "config.json").read_bytes()
    with httpx.Client(headers=AUTH, base_url=server.url, timeout=60) as http:
        before = card(http)
        replace_folder(checkpoints, "mnist-dae", corrupt)
        answer = http.post("/v1/admin/reload")
        after = card(http)
        denoised = http.post(DENOISE, files=files(image_bytes())).status_code
        metrics = http.get("/metrics").text
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["loaded"] == [] and body["unchanged"] == ["mnist-vae"] and body["workers"] == 1
    reason = body["refused"]["mnist-dae"]
    assert f"{folder}: model.safetensors: sha256 mismatch" in reason, reason
    assert after["sha256"] == before["sha256"] and after["loaded_at"] == before["loaded_at"]
    assert denoised == 200
    assert 'aeserve_model_loads_total{model="mnist-dae",result="refused"} 1.0' in metrics
    assert server.wait_for("reload refused mnist-dae, the old one keeps serving"), server.output()[-3000:]
