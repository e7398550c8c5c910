"""The photo training task: patches, noise as users have it, gray patches, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.checkpoint import load_checkpoint
from model.config import NoiseConfig
from model.photo import task as task_module
from model.photo.inference import SIGMA_CAP
from model.photo.network import PhotoDenoiser
from model.photo.preset import photo_color_preset, photo_gray_preset, photo_preset
from model.photo.task import PhotoTask, dihedral
from tests.conftest import make_photos


def colour_photos(folder: Path, n: int, size: tuple[int, int], seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = rng.integers(0, 256, size=(size[0], size[1], 3), dtype=np.uint8)
        Image.fromarray(arr, "RGB").save(folder / f"c_{i:03d}.png")
    return folder


def test_dihedral_gives_the_eight_symmetries() -> None:
    x = torch.arange(9.0).view(1, 3, 3)
    outs = {tuple(dihedral(x, k).flatten().tolist()) for k in range(8)}
    assert len(outs) == 8


def test_task_batches_and_validation(tmp_path: Path) -> None:
    data = make_photos(tmp_path / "photos", 5, 60, 1)
    cfg = photo_preset()
    cfg.train.batch_size, cfg.train.patches_per_epoch = 4, 12
    task = PhotoTask(cfg, str(data), torch.device("cpu"))
    assert (len(task.train), len(task.val)) == (4, 1)
    batches = list(task.batches(0, 0, 1))
    assert len(batches) == 3 and batches[0].shape == (4, 1, 48, 48) and batches[0].dtype == torch.uint8
    assert not torch.equal(batches[0], next(iter(task.batches(1, 0, 1))))  # epochs differ
    net = PhotoDenoiser(cfg.model)
    loss, _ = task.loss(net, batches[0], 0, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and float(loss.detach()) > 0.0
    metrics = task.validate(net.eval())
    assert metrics["val_loss"] == -(metrics["psnr"] + metrics["psnr_8bit"]) / 2
    assert metrics["psnr_15"] > metrics["psnr_25"] > metrics["psnr_50"]
    assert metrics["psnr_15_8bit"] > metrics["psnr_25_8bit"] > metrics["psnr_50_8bit"]


def test_a_single_image_is_validated_on_and_the_split_says_so(tmp_path: Path) -> None:
    """With one image there is nothing to hold out: validation measures the training image, and
    the checkpoint's ``dataset.split`` says so (it said 'validation = first 0 of a permutation'
    beside 'val': 1)."""
    data = make_photos(tmp_path / "photos", 1, 60, 1)
    task = PhotoTask(photo_preset(), data, torch.device("cpu"))
    assert len(task.train) == len(task.val) == 1 and torch.equal(task.train[0], task.val[0])
    assert task.data_description["split"] == ("validation = the training image itself (a single "
                                              "image: none held out)")


def test_stacked_patches_equal_the_one_by_one_cut(tmp_path: Path) -> None:
    data = make_photos(tmp_path / "photos", 6, 60, 1)  # all 60x60: the stacked path
    cfg = photo_preset()
    cfg.train.batch_size, cfg.train.patches_per_epoch = 16, 64
    task = PhotoTask(cfg, str(data), torch.device("cpu"))
    assert task.stacked
    stacked = list(task.batches(2, 0, 1))
    task.stacked = False  # the one-by-one path on the same draws
    single = list(task.batches(2, 0, 1))
    assert len(stacked) == len(single) == 4
    assert all(torch.equal(a, b) for a, b in zip(stacked, single, strict=True))


def test_sigma_weighting_favours_the_low_noise_patches(tmp_path: Path) -> None:
    data = make_photos(tmp_path / "photos", 5, 60, 1)
    cfg = photo_preset()
    cfg.train.batch_size, cfg.train.patches_per_epoch = 8, 8
    task = PhotoTask(cfg, str(data), torch.device("cpu"))
    batch = next(iter(task.batches(0, 0, 1)))
    assert cfg.train.sigma_weight_floor == 0.04  # the preset weights

    def identity(x: torch.Tensor, level: torch.Tensor | None = None) -> torch.Tensor:
        return x  # its error on a patch is that patch's noise power, sigma**2

    cfg.train.sigma_weight_floor = 0.0
    plain, _ = task.loss(identity, batch, 0, torch.Generator().manual_seed(0))  # type: ignore[arg-type]
    cfg.train.sigma_weight_floor = 0.04
    weighted, _ = task.loss(identity, batch, 0, torch.Generator().manual_seed(0))  # type: ignore[arg-type]
    # the same noise draws; weights 1/(sigma + floor) shift the average towards the small sigmas
    assert 0.0 < float(weighted) < float(plain)
    gen = torch.Generator().manual_seed(0)
    sigma = cfg.noise.sigma_max * torch.rand(8, generator=gen)
    w = 1.0 / (sigma + 0.04)
    assert float(weighted) == pytest.approx(float((w * sigma**2).sum() / w.sum()), rel=0.05)


def test_training_draws_its_noise_levels_with_the_noise_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_photos(tmp_path / "photos", 5, 60, 1)
    cfg = photo_preset()
    cfg.train.batch_size, cfg.train.patches_per_epoch = 8, 8
    task = PhotoTask(cfg, str(data), torch.device("cpu"))
    calls: list[int] = []

    def fixed_levels(noise_cfg: NoiseConfig, n: int, generator: torch.Generator | None,
                     device: torch.device) -> torch.Tensor:
        assert noise_cfg is cfg.noise
        calls.append(n)
        return torch.full((n, 1, 1, 1), 0.2, device=device)

    monkeypatch.setattr(task_module, "draw_levels", fixed_levels)
    noisy, clean, sigma = task.noisy_batch(next(iter(task.batches(0, 0, 1))), torch.Generator())
    assert calls == [8]
    assert torch.equal(sigma, torch.full((8,), 0.2))
    assert float((noisy - clean).std()) == pytest.approx(0.2, rel=0.05)  # the levels drawn are used


def test_clipped_8bit_noise_is_in_every_training_batch(tmp_path: Path) -> None:
    data = make_photos(tmp_path / "photos", 5, 60, 1)
    cfg = photo_gray_preset()
    cfg.train.batch_size, cfg.train.patches_per_epoch = 16, 64
    task = PhotoTask(cfg, str(data), torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    for batch in task.batches(0, 0, 1):
        noisy, clean, sigma = task.noisy_batch(batch, gen)
        eight = noisy[:8]  # half of every batch: clipped to [0, 1], rounded to 8 bits
        assert float(eight.min()) >= 0.0 and float(eight.max()) <= 1.0
        assert torch.equal(eight * 255.0, torch.round(eight * 255.0))
        noisy_bright = (clean[:8] > 0.9) & (sigma[:8].view(-1, 1, 1, 1) > 0.1)
        assert bool((eight[noisy_bright.expand_as(eight)] == 1.0).any())  # clipping happened
        assert float(noisy[8:].max()) > 1.0 or float(noisy[8:].min()) < 0.0  # the rest: unclipped
        assert float(sigma.max()) <= 55 / 255 and float(sigma.min()) >= 0.0


def test_the_shipped_recipe_keeps_unclipped_noise(tmp_path: Path) -> None:
    data = make_photos(tmp_path / "photos", 5, 60, 1)
    cfg = photo_preset()
    cfg.train.batch_size, cfg.train.patches_per_epoch = 16, 16
    task = PhotoTask(cfg, str(data), torch.device("cpu"))
    noisy = task.noisy_batch(next(iter(task.batches(0, 0, 1))), torch.Generator().manual_seed(0))[0]
    assert not torch.equal(noisy * 255.0, torch.round(noisy * 255.0))


def test_colour_task_reads_several_folders_and_makes_a_quarter_gray(tmp_path: Path) -> None:
    gray = make_photos(tmp_path / "gray", 4, 60, 1)
    landscape = colour_photos(tmp_path / "colour", 3, (50, 70), 2)
    portrait = colour_photos(tmp_path / "portrait", 3, (70, 50), 3)
    cfg = photo_color_preset()
    cfg.train.batch_size, cfg.train.patches_per_epoch, cfg.train.val_fraction = 16, 64, 0.1
    task = PhotoTask(cfg, [gray, landscape, portrait], torch.device("cpu"))
    assert len(task.train) + len(task.val) == 10
    assert len(task.stacks) == 2  # 60x60 gray as RGB, 50x70 colour (portraits turned)
    batches = list(task.batches(0, 0, 1))
    assert batches[0].shape == (16, 3, 48, 48)
    task.stacked = False
    assert all(torch.equal(a, b) for a, b in zip(batches, task.batches(0, 0, 1), strict=True))
    noisy = task.noisy_batch(batches[0], torch.Generator().manual_seed(0))[0]
    gray = [i for i in range(16) if torch.equal(noisy[i, 0], noisy[i, 1])
            and torch.equal(noisy[i, 0], noisy[i, 2])]  # three equal planes, the same noise in each
    assert len(gray) == 4
    net = PhotoDenoiser(cfg.model)
    loss, _ = task.loss(net, batches[0], 0, torch.Generator().manual_seed(0))
    assert float(loss.detach()) > 0.0



def test_gray_and_colour_patches_both_get_8bit_and_unclipped_noise(tmp_path: Path) -> None:
    """Users' gray JPEGs are gray and 8-bit: the two choices are made independently of each other."""
    colour = colour_photos(tmp_path / "colour", 4, (60, 60), 2)
    cfg = photo_color_preset()
    cfg.train.batch_size, cfg.train.patches_per_epoch = 128, 128
    task = PhotoTask(cfg, str(colour), torch.device("cpu"))
    noisy = task.noisy_batch(next(iter(task.batches(0, 0, 1))), torch.Generator().manual_seed(0))[0]
    gray = (noisy[:, 0] == noisy[:, 1]).all(dim=(1, 2)) & (noisy[:, 0] == noisy[:, 2]).all(dim=(1, 2))
    eight_bit = (noisy * 255.0 == torch.round(noisy * 255.0)).all(dim=(1, 2, 3))
    counts = {(g, e): int((gray == g).logical_and(eight_bit == e).sum())
              for g in (True, False) for e in (True, False)}
    # gray a quarter, 8-bit a half, chosen independently: 1/8, 1/8, 3/8, 3/8 of 128
    assert counts == {(True, True): 16, (True, False): 16, (False, True): 48, (False, False): 48}


@pytest.mark.parametrize("fraction", [0.0, 0.25, 1.0])
def test_known_fraction_is_the_share_of_patches_told_their_level(tmp_path: Path, fraction: float) -> None:
    data = make_photos(tmp_path / "photos", 5, 60, 1)
    cfg = photo_preset()
    cfg.train.batch_size, cfg.train.patches_per_epoch = 64, 64
    cfg.model.hidden = [8, 16, 32, 64]
    cfg.train.known_fraction = fraction
    task = PhotoTask(cfg, str(data), torch.device("cpu"))
    net = PhotoDenoiser(cfg.model)
    levels: list[torch.Tensor] = []
    net.register_forward_pre_hook(lambda module, args: levels.append(args[1]))
    task.loss(net, next(iter(task.batches(0, 0, 1))), 0, torch.Generator().manual_seed(0))
    told = int((~torch.isnan(levels[0])).sum())  # NaN: blind
    assert told == pytest.approx(64 * fraction, abs=8)
    assert (told == 0) == (fraction == 0.0) and (told == 64) == (fraction == 1.0)


def test_a_photo_checkpoint_records_the_recipe_it_was_trained_with(tiny_photo_checkpoint: Path) -> None:
    config = load_checkpoint(tiny_photo_checkpoint / "photo-denoiser").meta["config"]
    assert config["train"]["lr_warmup_steps"] == 200
    assert config["train"]["known_fraction"] == 0.25
    # the noise range it was trained on, which serving clamps the level to
    assert config["noise"]["sigma_max"] * 255.0 == pytest.approx(SIGMA_CAP)
