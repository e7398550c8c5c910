"""The photo evaluation on generated images: both protocols, table, figure, checkpoint update."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from model.checkpoint import load_checkpoint
from model.cli import UsageError
from model.evaluate import evaluate as main
from model.metrics import psnr_8bit
from model.photo.evaluate import evaluate_set, noisy_version
from model.photo.pair import load_photo
from tests.conftest import ROOT, make_photos


def colour_folder(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        arr = rng.integers(40, 200, size=(3, 1, 1)) + np.zeros((3, 30, 44))
        arr[:, 5:20, 10:30] = rng.integers(0, 255, size=(3, 1, 1))
        Image.fromarray(arr.transpose(1, 2, 0).astype(np.uint8), "RGB").save(folder / f"c{i}.png")
    return folder


def test_noise_is_fixed_per_image_and_unclipped() -> None:
    clean = np.full((1, 20, 20), 250, dtype=np.uint8)
    a, b = noisy_version(clean, 25.0, 3), noisy_version(clean, 25.0, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, noisy_version(clean, 25.0, 4))
    assert a.max() > 1.0  # no clipping
    assert psnr_8bit(clean, (clean - 5) / 255.0) == pytest.approx(20.0 * np.log10(255.0 / 5.0))
    eight = noisy_version(clean, 25.0, 3, eight_bit=True)  # the same draw, clipped and rounded
    assert np.array_equal(eight, np.clip(np.round(a * 255.0), 0, 255) / 255.0)


def test_an_image_too_small_to_estimate_is_counted_not_averaged(tiny_photo_checkpoint: Path) -> None:
    model = load_photo(tiny_photo_checkpoint / "photo-denoiser").model
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (1, 10, 10), dtype=np.uint8),
              rng.integers(0, 256, (1, 40, 40), dtype=np.uint8)]
    result = evaluate_set(model, images, 25.0, False, False, [], [], 0, 55.0)
    assert result["sigma_unestimated"] == 1 and result["sigma_estimate_mean"] > 0
    json.dumps(result, allow_nan=False)  # no NaN for a model card to choke on


def test_evaluation_writes_metrics_and_updates_the_checkpoint(
    tiny_photo_checkpoint: Path, tmp_path: Path
) -> None:
    pytest.importorskip("bm3d")
    ckpt = tmp_path / "photo-denoiser"
    shutil.copytree(tiny_photo_checkpoint / "photo-denoiser", ckpt)
    gray = make_photos(tmp_path / "gray", 2, 40, 3)
    colour = colour_folder(tmp_path / "colour", 2)
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(ckpt), "--data-dir", str(gray), "--color-data-dir", str(colour),
            "--out", str(out), "--sigmas", "15", "50", "--bm3d-limit", "1", "--speed-size", "64",
            "--update-checkpoint"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("sets", "sets_8bit"):  # the papers' protocol and the 8-bit one
        bsd = metrics[key]["bsd68"]
        assert set(bsd) == {"15", "50"} and set(metrics[key]["cbsd68"]) == {"15", "50"}
        assert bsd["15"]["images"] == 2 and bsd["15"]["bm3d_images"] == 1
        assert bsd["15"]["bm3d"] > bsd["50"]["bm3d"]
    assert metrics["sets"]["bsd68"]["50"]["bm3d"] != metrics["sets_8bit"]["bsd68"]["50"]["bm3d"]
    assert metrics["speed_ms_per_mpx"]["gray"] > 0
    table = (out / "table.md").read_text()
    assert "| BSD68 (2) | 15 |" in table and "CBSD68" in table and "8-bit protocol" in table
    assert Image.open(out / "figure.png").size[0] > 100
    loaded = load_checkpoint(ckpt)  # weights untouched, hash still verifies
    assert loaded.meta["evaluation"]["command"].startswith("python -m model.evaluate ")
    assert loaded.meta["evaluation"]["metrics"]["sets"] == metrics["sets"]


def test_a_bm3d_cache_reuses_scores_of_the_same_inputs_only(
    tiny_photo_checkpoint: Path, tmp_path: Path
) -> None:
    pytest.importorskip("bm3d")
    gray = make_photos(tmp_path / "gray", 3, 40, 3)
    cache = tmp_path / "bm3d.json"

    def run(*extra: str) -> dict[str, Any]:
        out = tmp_path / "eval"
        assert main(["--checkpoint", str(tiny_photo_checkpoint / "photo-denoiser"), "--data-dir",
                     str(gray), "--out", str(out), "--sigmas", "25", "--no-known-sigma",
                     "--speed-size", "64", "--bm3d-cache", str(cache), *extra]) == 0
        return dict(json.loads((out / "metrics.json").read_text()))

    first = run("--protocols", "papers")["sets"]["bsd68"]["25"]
    assert first["bm3d_cached"] == 0 and first["bm3d_images"] == 3
    entries = json.loads(cache.read_text())["entries"]
    assert sorted(e["image"] for e in entries.values()) == [0, 1, 2]
    # mark image 2's score: a run that reuses it reports the mark, one that reruns BM3D cannot
    doctored = json.loads(cache.read_text())
    key = next(k for k, e in entries.items() if e["image"] == 2)
    doctored["entries"][key]["psnr"] = entries[key]["psnr"] + 30.0
    cache.write_text(json.dumps(doctored))
    again = run("--protocols", "papers")["sets"]["bsd68"]["25"]
    assert again["bm3d_cached"] == 2  # image 0 runs again: the figure shows its output
    assert again["bm3d"] == pytest.approx(first["bm3d"] + 10.0)  # the mean of 3: +30 / 3
    other = run("--protocols", "8bit")["sets_8bit"]["bsd68"]["25"]  # other noisy inputs: misses
    assert other["bm3d_cached"] == 0 and other["bm3d"] != pytest.approx(first["bm3d"])
    assert len(json.loads(cache.read_text())["entries"]) == 6


def test_speed_only_adds_this_machines_speed_and_keeps_the_quality_figures(
    tiny_photo_checkpoint: Path, tmp_path: Path
) -> None:
    ckpt = tmp_path / "photo-denoiser"
    shutil.copytree(tiny_photo_checkpoint / "photo-denoiser", ckpt)
    out = tmp_path / "eval"
    base = ["--checkpoint", str(ckpt), "--out", str(out), "--speed-size", "64"]
    with pytest.raises(UsageError, match=r"no .*metrics\.json"):
        main([*base, "--data-dir", str(tmp_path), "--speed-only"])
    gray = make_photos(tmp_path / "gray", 2, 40, 3)
    assert main([*base, "--data-dir", str(gray), "--sigmas", "25", "--no-bm3d"]) == 0
    before = json.loads((out / "metrics.json").read_text())
    before["speed_ms_per_mpx"]["device"] = "cuda:0"  # as if the quality run had been on a GPU
    (out / "metrics.json").write_text(json.dumps(before))
    assert main([*base, "--speed-only", "--update-checkpoint"]) == 0  # no test data needed
    after = json.loads((out / "metrics.json").read_text())
    assert after["sets"] == before["sets"] and after["command"] == before["command"]
    assert after["speed_ms_per_mpx"]["device"] == "cpu" and after["speed_ms_per_mpx"]["gray"] > 0
    assert after["speed_elsewhere"]["cuda:0"]["gray"] == before["speed_ms_per_mpx"]["gray"]
    assert "--speed-only" in after["speed_command"]
    assert "On cuda:0 (the quality run)" in (out / "table.md").read_text()
    assert load_checkpoint(ckpt).meta["evaluation"]["metrics"] == after


def spawned_children(pid: int) -> list[int]:
    """The multiprocessing workers ``pid`` has spawned (not its resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline:
                found.append(int(child))
    return found


def is_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has finished


def stopped_midway(checkpoint: Path, tmp_path: Path, stop: Callable[[int, list[int]], None]
                   ) -> tuple[int, list[int], str]:
    """Run model.evaluate with two BM3D workers; after the model's first image (the BM3D jobs are
    queued and running by then) call ``stop(pid, workers)``. Its exit status, the workers still
    running after it exited, and the rest of its stderr."""
    gray = make_photos(tmp_path / "gray", 4, 256, 5)  # BM3D: seconds an image, the model: less
    cmd = [sys.executable, "-m", "model.evaluate", "--checkpoint", str(checkpoint / "photo-denoiser"),
           "--data-dir", str(gray), "--out", str(tmp_path / "eval"), "--sigmas", "25",
           "--bm3d-workers", "2", "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    workers: list[int] = []
    try:
        for line in proc.stderr:
            if "image 1/4" in line:
                break
        else:
            pytest.fail(f"model.evaluate ended before its first image (exit {proc.wait()})")
        workers = spawned_children(proc.pid)
        assert workers and all(is_running(pid) for pid in workers)
        stop(proc.pid, workers)
        status = proc.wait(timeout=120)  # a run left waiting never ends
        left_running = [pid for pid in workers if is_running(pid)]
    finally:
        proc.kill()
        proc.wait()
        for pid in workers:  # left behind, they would hold stderr open
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
    return status, left_running, proc.stderr.read()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_sigterm_stops_the_bm3d_workers_instead_of_leaving_them_running(
    tiny_photo_checkpoint: Path, tmp_path: Path
) -> None:
    status, left_running, rest = stopped_midway(
        tiny_photo_checkpoint, tmp_path, lambda pid, _: os.kill(pid, signal.SIGTERM))
    assert status == 128 + signal.SIGTERM, rest[-2000:]
    assert not left_running
    assert "Traceback" not in rest
    assert not (tmp_path / "eval" / "metrics.json").exists()  # an interrupted run writes no figures


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_a_bm3d_worker_that_dies_fails_the_run_instead_of_hanging_it(
    tiny_photo_checkpoint: Path, tmp_path: Path
) -> None:
    # SIGKILL to one worker, as the out-of-memory killer would
    status, left_running, rest = stopped_midway(
        tiny_photo_checkpoint, tmp_path, lambda _, workers: os.kill(workers[0], signal.SIGKILL))
    assert status == 1, rest[-2000:]
    assert "a BM3D worker process died" in rest
    assert not left_running
    assert not (tmp_path / "eval" / "metrics.json").exists()
