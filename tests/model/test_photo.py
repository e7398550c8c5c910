"""The photo denoiser: network shapes, tiled inference, sizes, colour, the training task."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint
from model.config import ModelConfig
from model.photo.inference import denoise_image
from model.photo.network import PhotoDenoiser
from model.photo.preset import photo_preset
from model.photo.inference import opponent_to_rgb, rgb_to_opponent
from model.photo.task import PhotoTask, dihedral

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "checkpoints" / "photo-denoiser"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10.0 * math.log10(1.0 / max(float(torch.mean((a - b) ** 2)), 1e-12))


def photo(c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth image with edges, in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = torch.stack([0.3 + 0.4 * (xx * torch.rand(1, generator=gen) + yy * torch.rand(1, generator=gen))
                       for _ in range(c)])[None]
    img[..., h // 4 : h // 2, w // 3 : w // 2] = 0.8
    return img.clamp(0, 1)


def busy_model() -> PhotoDenoiser:
    """A random network whose output leans heavily on context, so tiling mistakes would show."""
    torch.manual_seed(0)
    # the preset's levels and depth (so its receptive field), narrower to keep the test quick
    net = PhotoDenoiser(dataclasses.replace(photo_preset().model, hidden=[8, 16, 32, 64]))
    with torch.no_grad():
        net.tail.weight.normal_(0.0, 0.05)
    return net.eval()


def test_network_keeps_any_size_and_conditions_on_the_level() -> None:
    net = PhotoDenoiser(ModelConfig(kind="photo", channels=1, hidden=[8, 16, 32], depth=1))
    with torch.no_grad():
        net.tail.weight.normal_(0.0, 0.1)
    for h, w in [(1, 1), (1, 9), (13, 1), (7, 5), (33, 20)]:
        assert net(torch.rand(2, 1, h, w)).shape == (2, 1, h, w)
    x = torch.rand(2, 1, 16, 16)
    blind = net(x)
    known = net(x, torch.tensor([0.1, float("nan")]))
    assert not torch.allclose(blind[0], known[0])  # the level reaches the network
    assert torch.allclose(blind[1], known[1])  # NaN means unknown: same as blind


@pytest.mark.parametrize("channels", [1, 3])
def test_tiled_result_matches_the_whole_image(channels: int) -> None:
    net = busy_model()
    clean = photo(channels, 136, 200)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    whole, _ = denoise_image(net, noisy, tile=4096)
    tiled, _ = denoise_image(net, noisy, tile=96, overlap=48)  # 2 x 3 tiles
    seamy, _ = denoise_image(net, noisy, tile=96, overlap=0)
    assert abs(psnr(whole, clean) - psnr(tiled, clean)) < 0.05
    assert psnr(whole, tiled) > 50.0
    assert psnr(whole, seamy) < psnr(whole, tiled)  # the check would see seams


@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="no shipped photo checkpoint")
def test_shipped_model_denoises_and_estimates_sigma() -> None:
    model = load_checkpoint(SHIPPED).model
    clean = photo(1, 160, 200)
    noisy = clean + (25 / 255) * torch.randn(clean.shape, generator=torch.Generator().manual_seed(2))
    y, est = denoise_image(model, noisy)
    assert psnr(y, clean) > psnr(noisy.clamp(0, 1), clean) + 5.0
    assert 18.0 < est < 32.0
    tiled, _ = denoise_image(model, noisy, tile=48)
    assert abs(psnr(tiled, clean) - psnr(y, clean)) < 0.05


@pytest.mark.parametrize("size", [(1, 1), (1, 57), (61, 1), (7, 5), (3, 200), (90, 150)])
@pytest.mark.parametrize("channels", [1, 3])
def test_any_size_round_trips(size: tuple[int, int], channels: int) -> None:
    net = busy_model()
    x = torch.rand(1, channels, *size, generator=torch.Generator().manual_seed(3))
    y, est = denoise_image(net, x, tile=64)
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert math.isfinite(est) and est >= 0.0


def test_opponent_transform_is_exact_and_keeps_noise_white() -> None:
    x = torch.rand(1, 3, 40, 50)
    planes = rgb_to_opponent(x)
    assert planes.shape == (3, 1, 40, 50)
    assert float(planes.min()) >= 0.0 and float(planes.max()) <= 1.0
    assert torch.allclose(opponent_to_rgb(planes), x, atol=1e-6)
    noise = rgb_to_opponent(torch.randn(1, 3, 400, 500, generator=torch.Generator().manual_seed(0)))
    noise = noise - torch.tensor([0.0, 0.5, 0.5]).view(3, 1, 1, 1)
    stds = noise.flatten(1).std(dim=1)
    assert torch.allclose(stds, torch.tensor([1 / 3**0.5, 1 / 2**0.5, 6**0.5 / 4]), rtol=0.02)
    corr = torch.corrcoef(noise.flatten(1))
    assert float((corr - torch.eye(3)).abs().max()) < 0.01


def test_gray_stays_gray_and_a_neutral_colour_image_stays_neutral() -> None:
    net = busy_model()  # even a random network: neutrality holds by construction
    gray = photo(1, 64, 80)
    noisy = gray + 0.08 * torch.randn(gray.shape, generator=torch.Generator().manual_seed(4))
    y, _ = denoise_image(net, noisy)
    assert y.shape == (1, 1, 64, 80) and not torch.equal(y, noisy.clamp(0, 1))
    y_rgb, _ = denoise_image(net, noisy.expand(1, 3, 64, 80))
    assert float((y_rgb[0, 0] - y_rgb[0, 1]).abs().max()) < 1e-4
    assert float((y_rgb[0, 2] - y_rgb[0, 1]).abs().max()) < 1e-4


@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="no shipped photo checkpoint")
def test_shipped_model_keeps_colour_means() -> None:
    model = load_checkpoint(SHIPPED).model
    clean = photo(3, 96, 96, seed=5)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(6))
    y, _ = denoise_image(model, noisy)
    shift = (y.mean(dim=(2, 3)) - clean.mean(dim=(2, 3))).abs()
    assert float(shift.max()) < 1 / 255


def test_bad_inputs_are_refused() -> None:
    net = busy_model()
    with pytest.raises(ValueError):
        denoise_image(net, torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError):
        denoise_image(net, torch.rand(8, 8))
    with pytest.raises(ValueError):
        denoise_image(net, torch.rand(1, 1, 8, 8), sigma=-1.0)
    with pytest.raises(ValueError):
        denoise_image(net, torch.full((1, 1, 8, 8), float("nan")))


def test_dihedral_gives_the_eight_symmetries() -> None:
    x = torch.arange(9.0).view(1, 3, 3)
    outs = {tuple(dihedral(x, k).flatten().tolist()) for k in range(8)}
    assert len(outs) == 8


def test_task_batches_and_validation(tmp_path: Path) -> None:
    from tests.conftest import make_photos

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
    assert metrics["val_loss"] == -metrics["psnr"]
    assert metrics["psnr_15"] > metrics["psnr_25"] > metrics["psnr_50"]


def test_stacked_patches_equal_the_one_by_one_cut(tmp_path: Path) -> None:
    from tests.conftest import make_photos

    data = make_photos(tmp_path / "photos", 6, 60, 1)  # all 60x60: the stacked path
    cfg = photo_preset()
    cfg.train.batch_size, cfg.train.patches_per_epoch = 16, 64
    task = PhotoTask(cfg, str(data), torch.device("cpu"))
    assert task.stacked is not None
    stacked = list(task.batches(2, 0, 1))
    task.stacked = None  # force the one-by-one path on the same draws
    single = list(task.batches(2, 0, 1))
    assert len(stacked) == len(single) == 4
    assert all(torch.equal(a, b) for a, b in zip(stacked, single, strict=True))


def test_sigma_weighting_favours_the_low_noise_patches(tmp_path: Path) -> None:
    from tests.conftest import make_photos

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


def test_tiny_checkpoint_loads_as_a_photo_model(tiny_photo_checkpoint: Path) -> None:
    ckpt = load_checkpoint(tiny_photo_checkpoint / "photo-denoiser")
    assert ckpt.meta["kind"] == "photo" and isinstance(ckpt.model, PhotoDenoiser)
    assert ckpt.meta["training"]["steps"] == 4
    y, _ = denoise_image(ckpt.model, torch.rand(1, 3, 21, 34))
    assert y.shape == (1, 3, 21, 34)
