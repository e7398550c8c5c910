"""A photo checkpoint with a pinned colour network: RGB in one pass, each half verified."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from model.checkpoint import CheckpointError
from model.photo import pair as pair_module
from model.photo.inference import denoise_image, work_pixels
from model.photo.pair import PhotoPair, colour_sha256, load_photo
from model.photo.preset import photo_color_preset
from tests.model.photo.synthetic import photo, save_photo_net


@pytest.fixture
def paired(tmp_path: Path) -> Path:
    gray = save_photo_net(tmp_path / "photo-denoiser", 1, 0)
    assert pair_module.main([str(gray), "--colour", str(save_photo_net(tmp_path / "run", 3, 1))]) == 0
    return gray


def forwards(net: torch.nn.Module) -> list[int]:
    calls: list[int] = []
    net.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_rgb_goes_through_the_colour_network_once_and_gray_through_the_gray_one(paired: Path) -> None:
    ckpt = load_photo(paired)
    model = ckpt.model
    assert isinstance(model, PhotoPair)
    gray_calls, colour_calls = forwards(model.gray), forwards(model.colour)
    rgb = photo(3, 40, 56)
    y, _ = denoise_image(model, rgb)
    assert y.shape == rgb.shape and (len(gray_calls), len(colour_calls)) == (0, 1)
    y, _ = denoise_image(model, photo(1, 40, 56))
    assert y.shape == (1, 1, 40, 56) and (len(gray_calls), len(colour_calls)) == (1, 1)
    # the cost the service admits: colour is one pass, as gray; the gray network alone runs five
    assert work_pixels(model, 900, 1300, 3) == pytest.approx(work_pixels(model, 900, 1300, 1), rel=1e-2)
    assert work_pixels(model.gray, 900, 1300, 3) == 5 * work_pixels(model.gray, 900, 1300, 1)
    assert colour_sha256(ckpt.meta) == load_photo(paired / "colour").sha256
    # readable by a service running as another user, as the rest of the folder is
    assert [oct(p.stat().st_mode & 0o777) for p in sorted((paired / "colour").rglob("*"))] == ["0o644"] * 2
    assert oct((paired / "colour").stat().st_mode & 0o777) == "0o755"


def test_a_checkpoint_without_colour_loads_as_its_network(tmp_path: Path) -> None:
    model = load_photo(save_photo_net(tmp_path / "gray", 1, 0)).model
    assert not isinstance(model, PhotoPair) and model.cfg.channels == 1


def test_a_colour_network_that_is_not_the_pinned_one_is_refused(paired: Path, tmp_path: Path) -> None:
    other = save_photo_net(tmp_path / "other-run", 3, 2)
    for name in ("config.json", "model.safetensors"):  # a whole, valid checkpoint, not the pinned one
        (paired / "colour" / name).write_bytes((other / name).read_bytes())
    with pytest.raises(CheckpointError, match="pins"):
        load_photo(paired)


def test_a_corrupt_colour_network_is_refused(paired: Path) -> None:
    weights = paired / "colour" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_photo(paired)


def test_only_a_colour_network_is_paired_and_only_with_a_gray_one(tmp_path: Path) -> None:
    gray = save_photo_net(tmp_path / "photo-denoiser", 1, 0)
    with pytest.raises(CheckpointError, match="not a colour"):
        pair_module.pair(gray, save_photo_net(tmp_path / "gray-run", 1, 1))
    assert "colour" not in json.loads((gray / "config.json").read_text())
    colour = save_photo_net(tmp_path / "colour-ckpt", 3, 0)
    with pytest.raises(CheckpointError, match="pairs with a gray photo checkpoint"):
        pair_module.pair(colour, save_photo_net(tmp_path / "run", 3, 1))
    assert not (colour / "colour").exists()
    with pytest.raises(ValueError, match="1-channel network and a 3-channel one"):
        PhotoPair(load_photo(colour).model, load_photo(tmp_path / "run").model)


def test_pair_needs_one_noise_range(paired: Path) -> None:
    meta = json.loads((paired / "colour" / "config.json").read_text())
    cfg = dataclasses.replace(photo_color_preset().noise, sigma_max=0.1)
    assert cfg.sigma_max != meta["config"]["noise"]["sigma_max"]
    meta["config"]["noise"]["sigma_max"] = cfg.sigma_max
    (paired / "colour" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="noise ranges"):
        load_photo(paired)


@pytest.mark.parametrize("name", ["..", "../photo-denoiser", "/tmp", ""])
def test_the_colour_network_lives_in_a_subfolder(paired: Path, name: str) -> None:
    meta = json.loads((paired / "config.json").read_text())
    meta["colour"]["folder"] = name
    (paired / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="must be a subfolder"):
        load_photo(paired)


def test_the_command_answers_a_wrong_network_in_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gray = save_photo_net(tmp_path / "gray", channels=1, seed=0)
    assert pair_module.main([str(gray), "--colour", str(gray)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("python -m model.photo.pair: error: ") and "colour" in line


def test_a_pairing_refused_for_its_noise_range_leaves_the_checkpoint_as_it_was(
    paired: Path, tmp_path: Path
) -> None:
    run = save_photo_net(tmp_path / "other-range", 3, 2)
    meta = json.loads((run / "config.json").read_text())
    meta["config"]["noise"]["sigma_max"] = 0.1  # the weights' hash is unchanged: still loadable
    (run / "config.json").write_text(json.dumps(meta))
    before = {p.relative_to(paired): p.read_bytes() for p in paired.rglob("*") if p.is_file()}
    assert pair_module.main([str(paired), "--colour", str(run)]) == 2
    after = {p.relative_to(paired): p.read_bytes() for p in paired.rglob("*") if p.is_file()}
    assert after == before
    load_photo(paired)  # the old pair still loads


def test_a_resumed_run_that_was_paired_since_stays_paired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gray run paired with a colour network (``model.photo.pair RUN --colour ...``) and then
    resumed: its next best checkpoint rewrote config.json without the pin, leaving ``colour/``
    unpinned and the folder serving colour through the gray network, without a word."""
    from model.photo.task import PhotoTask
    from model.train import main
    from tests.conftest import make_photos
    from tests.model.commands import run_main, train_tiny_flags

    data, out = make_photos(tmp_path / "photos", 6, 64, 0), tmp_path / "run"
    small = ("--hidden", "8", "16", "32", "64", "--batch-size", "4", "--threads", "1")
    first = run_main(main, *train_tiny_flags("photo-gray", data, out, "--max-steps", "1", *small))
    assert first.returncode == 0, first.stderr[-2000:]
    assert pair_module.main([str(out), "--colour", str(save_photo_net(tmp_path / "colour", 3, 1))]) == 0
    validate = PhotoTask.validate

    def better(task: PhotoTask, model: torch.nn.Module) -> dict[str, float]:
        return {**validate(task, model), "val_loss": -1e9}  # the resumed run's checkpoint is the best

    monkeypatch.setattr(PhotoTask, "validate", better)
    resumed = run_main(main, *train_tiny_flags("photo-gray", data, out, "--max-steps", "2", "--resume",
                                               *small))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    ckpt = load_photo(out)
    assert ckpt.meta["training"]["steps"] == 2  # the new checkpoint
    assert isinstance(ckpt.model, PhotoPair) and colour_sha256(ckpt.meta) is not None
