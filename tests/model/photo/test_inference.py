"""Photo inference: tiles, any size, colour on gray and colour networks, cost, check, sigma."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint
from model.config import ModelConfig
from model.photo.inference import (
    DEFAULT_OVERLAP,
    SIGMA_CAP,
    denoise_image,
    estimate_noise_sigma,
    overlap_for,
    run_tiled,
    sigma_cap,
    work_pixels,
)
from model.photo.network import PhotoDenoiser
from tests.model.photo.synthetic import busy_model, photo, psnr

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "checkpoints" / "photo-denoiser"


class Counter:
    """Counts the images and pixels the network's first layer sees (after the network's padding),
    and every convolution's input with its zero padding, weighted by the convolution's
    multiply-adds per input pixel."""

    def __init__(self, net: PhotoDenoiser) -> None:
        self.calls = self.images = self.pixels = 0
        self.macs = Fraction(0)  # multiply-adds over the padded inputs the convolutions see
        self.per_pixel = Fraction(0)  # multiply-adds per pixel of a large image
        self.first: tuple[int, int] = (0, 0)
        net.head.register_forward_pre_hook(self.hook)
        for conv in net.modules():
            if isinstance(conv, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
                conv.register_forward_pre_hook(self.conv_hook)

    def hook(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        b, _, h, w = inputs[0].shape
        self.calls += 1
        self.images += b
        self.pixels += b * h * w
        self.first = (h, w)

    def conv_hook(self, conv: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        assert isinstance(conv, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
        b, c_in, h, w = inputs[0].shape
        kh, kw = conv.kernel_size
        sh, sw = conv.stride
        if isinstance(conv, torch.nn.ConvTranspose2d):  # each input pixel feeds kh x kw outputs
            per_input, ph, pw = Fraction(c_in * conv.out_channels * kh * kw), 0, 0
        else:  # each output pixel reads kh x kw inputs, over the zero-padded input
            per_input = Fraction(c_in * conv.out_channels * kh * kw, sh * sw)
            assert not isinstance(conv.padding, str)
            ph, pw = conv.padding[0], conv.padding[1]
        self.macs += b * per_input * (h + 2 * ph) * (w + 2 * pw)
        if self.calls == 1:  # the resolution of this convolution's input against the image's
            self.per_pixel += per_input * Fraction(h * w, self.first[0] * self.first[1])

    def work(self, passes: int = 1) -> int:
        """The multiply-adds seen, in pixels of a large image (at ``per_pixel`` each), each of the
        ``passes`` over the image rounded up."""
        return passes * math.ceil(self.macs / passes / self.per_pixel)

    def reset(self) -> None:
        self.pixels, self.macs = 0, Fraction(0)


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


def test_a_network_that_reaches_further_gets_tiles_that_reach_as_far() -> None:
    """A deeper U-Net than the shipped one reaches 70 pixels, beyond the least overlap: its tiles
    get that much context by default, and equal the whole image; 48 pixels would not."""
    torch.manual_seed(0)
    net = PhotoDenoiser(ModelConfig(kind="photo", channels=1, hidden=[4, 4, 4, 4], depth=3)).eval()
    with torch.no_grad():  # weights that carry the far context (the default init all but drops it)
        for conv in net.modules():
            if isinstance(conv, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
                torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    assert net.context == 70 and overlap_for(net) == 70 > DEFAULT_OVERLAP
    x = torch.rand(1, 1, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = run_tiled(net, x, None, tile=4096)
        tiled = run_tiled(net, x, None, tile=32)  # 3 x 3 tiles
        short = run_tiled(net, x, None, tile=32, overlap=DEFAULT_OVERLAP)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)
    assert (short - whole).abs().max() > 1e-4  # the check would see context cut short


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
    if (size[0] - 6) * (size[1] - 6) > 49 and min(size) >= 7:  # 7x7 patches: > 49
        assert est is not None and math.isfinite(est) and est >= 0.0
    else:  # too small to estimate: unknown
        assert est is None


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


def test_tiny_checkpoint_loads_as_a_photo_model(tiny_photo_checkpoint: Path) -> None:
    ckpt = load_checkpoint(tiny_photo_checkpoint / "photo-denoiser")
    assert ckpt.meta["kind"] == "photo" and isinstance(ckpt.model, PhotoDenoiser)
    assert ckpt.meta["training"]["steps"] == 4
    y, _ = denoise_image(ckpt.model, torch.rand(1, 3, 21, 34))
    assert y.shape == (1, 3, 21, 34)


SIZES = [(1, 1), (1, 300), (300, 1), (2, 3), (7, 5), (17, 16), (40, 300), (300, 40), (130, 170), (3, 700)]


@pytest.mark.parametrize("net_channels", [1, 3])
@pytest.mark.parametrize("channels", [1, 3])
def test_work_pixels_is_what_the_network_really_processes(net_channels: int, channels: int) -> None:
    net = busy_model(net_channels)
    counter = Counter(net)
    for tile, overlap in [(512, 48), (64, 16), (96, 0)]:
        for h, w in SIZES:
            counter.reset()
            denoise_image(net, torch.rand(1, channels, h, w), tile=tile, overlap=overlap)
            work = work_pixels(net, h, w, channels, tile, overlap)
            passes = 5 if (channels, net_channels) == (3, 1) else 1
            # every convolution over its padded input, in pixels of a large image: at least the
            # padded tiles the network is given
            assert work == counter.work(passes) >= counter.pixels, (h, w, tile)


def test_a_thin_strip_costs_the_halos_of_its_coarse_levels() -> None:
    net = busy_model()
    n = 1 << 24
    # a 1-pixel side gets no mirrored margin and tiles along the strip keep a square tile's area,
    # but the network pads it to its 8-pixel grid, and at its coarser levels the tile is 4, 2 and
    # 1 pixels wide: each 3x3 convolution there runs over 6, 4 and 3 columns
    assert 8 * n * 1.6 < work_pixels(net, 1, n, 1) < 8 * n * 1.8
    assert work_pixels(net, n, 1, 1) == work_pixels(net, 1, n, 1)
    assert work_pixels(net, 1, n, 3) == 5 * work_pixels(net, 1, n, 1)  # five gray passes
    counter = Counter(net)
    y, _ = denoise_image(net, torch.rand(1, 1, 1, 5000))
    assert y.shape == (1, 1, 1, 5000)
    assert counter.work() == work_pixels(net, 1, 5000, 1) > 1.6 * counter.pixels
    counter.reset()
    denoise_image(net, torch.rand(1, 1, 600, 600))  # square tiles: their halos are a few percent
    assert counter.pixels < work_pixels(net, 600, 600, 1) < 1.04 * counter.pixels


def test_colour_costs_one_network_pass_on_a_colour_network() -> None:
    gray_net, colour_net = busy_model(1), busy_model(3)
    x = photo(3, 90, 120)
    on_gray, on_colour = Counter(gray_net), Counter(colour_net)
    denoise_image(gray_net, x)
    denoise_image(colour_net, x)
    assert (on_colour.calls, on_colour.images) == (1, 1)  # one pass of the three planes together
    assert (on_gray.calls, on_gray.images) == (5, 5)  # Y, U, V and the negated U, V, one by one
    assert work_pixels(colour_net, 90, 120, 3) == work_pixels(colour_net, 90, 120, 1)
    # the same tiles: only the image planes in and out weigh a little differently
    assert work_pixels(colour_net, 90, 120, 3) == pytest.approx(work_pixels(gray_net, 90, 120, 1), rel=1e-2)


def test_a_colour_network_gives_gray_back_for_gray() -> None:
    net = busy_model(3)
    gray = photo(1, 40, 50)
    y, _ = denoise_image(net, gray)
    assert y.shape == (1, 1, 40, 50) and not torch.equal(y, gray)
    y_rgb, _ = denoise_image(net, gray.expand(1, 3, 40, 50))
    assert torch.allclose(y_rgb.mean(dim=1, keepdim=True), y, atol=1e-6)


class Stop(Exception):
    pass


@pytest.mark.parametrize("channels", [1, 3])
def test_check_runs_before_every_forward_and_its_exception_propagates(channels: int) -> None:
    net = busy_model()
    counter = Counter(net)
    calls: list[int] = []

    def check() -> None:
        calls.append(counter.calls)

    x = torch.rand(1, channels, 150, 200)
    denoise_image(net, x, tile=64, check=check)
    assert len(calls) == counter.calls > 1 and calls == list(range(counter.calls))

    def stop_at_third() -> None:
        if counter.calls == 2:
            raise Stop("deadline")

    counter.calls = 0
    with pytest.raises(Stop, match="deadline"):
        denoise_image(net, x, tile=64, check=stop_at_third)
    assert counter.calls == 2


def test_the_sigma_returned_is_the_clients_or_the_estimate() -> None:
    net = busy_model()
    clean = photo(1, 96, 96)
    noisy = clean + (20 / 255) * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    assert denoise_image(net, noisy, sigma=12.5)[1] == 12.5
    y, blind = denoise_image(net, noisy)
    assert blind == estimate_noise_sigma(noisy) and abs(blind - 20.0) < 2.0
    assert torch.equal(y, denoise_image(net, noisy, sigma=blind)[0])  # the network is told it
    assert not torch.equal(y, denoise_image(net, noisy, sigma=5.0)[0])


def test_a_flat_image_is_estimated_noiseless_and_the_network_told_so() -> None:
    net = busy_model()
    flat = torch.full((1, 1, 64, 64), 0.4)
    y, est = denoise_image(net, flat)
    assert est == 0.0
    assert torch.equal(y, denoise_image(net, flat, sigma=0.0)[0])  # told 0, not "unknown"


def test_the_network_is_told_at_most_the_cap() -> None:
    net = busy_model()
    gen = torch.Generator().manual_seed(0)
    noisy = photo(1, 64, 64) + (30 / 255) * torch.randn(1, 1, 64, 64, generator=gen)
    at_cap, used = denoise_image(net, noisy, sigma=40.0, cap=30.0)
    assert used == 40.0  # the answer says the sigma it was given
    assert torch.equal(at_cap, denoise_image(net, noisy, sigma=30.0, cap=30.0)[0])
    assert not torch.equal(at_cap, denoise_image(net, noisy, sigma=40.0)[0])  # the default cap is 55


def test_the_cap_is_the_top_of_the_training_range() -> None:
    cfg = load_checkpoint(SHIPPED).config
    assert sigma_cap(cfg) == pytest.approx(55.0) == SIGMA_CAP
    cfg.noise.sigma_max = 30 / 255
    assert sigma_cap(cfg) == pytest.approx(30.0)
