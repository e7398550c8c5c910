"""``scripts/train-photo-gpu.sh``, one GPU window, run for two steps on a CPU: what a window brings
back continues the shipped networks, records the chain, and comes in parts of at most PART_MB."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from model.checkpoint import load_checkpoint
from tests.conftest import make_photos

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "checkpoints" / "photo-denoiser"
SCRIPT_SETTINGS = ("DATA", "RUNS", "HOME_RUNS", "BUDGET", "DEVICE", "PART_MB", "EXTRA", "PYTHON",
                   "NETS", "COLOR_DATA", "GRAY_DATA", "SPEED", "SPEED_SIZE", "OUT", "INIT_COLOR",
                   "INIT_GRAY")


@pytest.mark.slow
def test_a_window_continues_the_shipped_networks_and_packs_them_in_parts(tmp_path: Path) -> None:
    make_photos(tmp_path / "data" / "cbsd432", 10, 64, 1)
    make_photos(tmp_path / "data" / "train400", 10, 64, 2)
    ours = {k: v for k, v in os.environ.items() if k not in SCRIPT_SETTINGS}  # none of the caller's
    env = {**ours, "DATA": str(tmp_path / "data"), "RUNS": str(tmp_path / "runs"),
           "HOME_RUNS": str(tmp_path / "home"), "OUT": str(tmp_path / "out"), "DEVICE": "cpu",
           "BUDGET": "120", "PART_MB": "1", "PYTHON": sys.executable,
           "EXTRA": "--max-steps 2 --batch-size 4 --patches-per-epoch 8 --epochs 1 --threads 1"}
    done = subprocess.run(["bash", "scripts/train-photo-gpu.sh"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    parts = sorted((tmp_path / "out").glob("photo-window.tar.part-*"))
    assert len(parts) > 1 and all(p.stat().st_size <= 2**20 for p in parts)
    with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in parts))) as tar:
        names = tar.getnames()
        assert not [n for n in names if ".state" in n]  # weights come back, not training state
        tar.extractall(tmp_path / "home", filter="data")
    home = tmp_path / "home"
    assert sorted((home / "status").read_text().splitlines()) == ["color exit 0", "gray exit 0"]
    for name, shipped in (("color", SHIPPED / "colour"), ("gray", SHIPPED)):
        before = json.loads((shipped / "config.json").read_text())["training"]
        training = json.loads((home / name / "config.json").read_text())["training"]
        assert training["init_from"]["weights_sha256"] == load_checkpoint(shipped).sha256, name
        assert training["chain"][:-1] == before["chain"], name
        assert training["total_steps"] == before["total_steps"] + 2, name
        load_checkpoint(home / name)  # whole: its weights match its config
