"""A blind estimate of an image's white Gaussian noise level, from the noisy image alone.

The method of Liu, Tanaka and Okutomi ("Single-image noise level estimation for blind denoising",
IEEE TIP 2013). In a patch without texture the pixels' covariance is sigma^2 times the identity, so
its smallest eigenvalue is sigma^2; texture only adds to the eigenvalues. Patches with texture are
left out by their gradient energy (the sum of squared horizontal and vertical differences), which
for a flat patch under noise sigma follows a Gamma law scaled by sigma^2: a patch is kept when its
energy is below that law's ``CONFIDENCE`` quantile at the current estimate. The estimate starts
from every patch and is refined on the weak-texture patches. Colour: each channel on its own, then
their mean.

Clipped 8-bit images (a noticeable share of pixels at exactly 0 or 255) lose noise where they clip:
there the estimate starts from the patches without a clipped pixel, leaves out the patches whose
mean lies within two sigma of 0 or 255, and corrects the smallest eigenvalue for the smaller sample.

Large images are sampled on a regular grid of patch positions (at most ``MAX_PATCHES``), which
keeps the cost at tens of milliseconds for any size. torch only: no scikit-image, no scipy.
"""

from __future__ import annotations

import math
from functools import cache

import torch
import torch.nn.functional as F

PATCH = 7
ITERATIONS = 3
CONFIDENCE = 1.0 - 1e-6
MAX_PATCHES = 1 << 17
CLIPPED_FRACTION = 1e-3  # pixels at 0 or 255 that mark an image as clipped


def estimate_noise_sigma(x: torch.Tensor) -> float | None:
    """The noise level of ``x`` (1, C, H, W) in [0, 1], on the 0-255 scale.

    None for an image too small to hold more ``PATCH`` x ``PATCH`` patches than a patch has pixels
    (fewer than about 14 x 14 pixels, or a side under ``PATCH``): its level is unknown.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected a (1, C, H, W) tensor, got {tuple(x.shape)}")
    _, c, h, w = x.shape
    positions = max(0, h - PATCH + 1) * max(0, w - PATCH + 1)
    if positions <= PATCH * PATCH:
        return None
    stride = max(1, math.ceil(math.sqrt(positions / MAX_PATCHES)))
    img = x.detach().to(device="cpu", dtype=torch.float64) * 255.0
    levels = [_channel_variance(img[:, i : i + 1], stride) for i in range(c)]
    return math.sqrt(max(0.0, sum(levels) / c))


def _channel_variance(img: torch.Tensor, stride: int) -> float:
    """sigma^2 of one (1, 1, H, W) plane on the 0-255 scale."""
    grad_h = (0.5 * (img[..., :, 2:] - img[..., :, :-2])) ** 2
    grad_v = (0.5 * (img[..., 2:, :] - img[..., :-2, :])) ** 2
    patches = F.unfold(img, PATCH, stride=stride)[0]  # (P*P, n)
    texture = (F.unfold(grad_h, (PATCH, PATCH - 2), stride=stride)[0].sum(0)
               + F.unfold(grad_v, (PATCH - 2, PATCH), stride=stride)[0].sum(0))
    mean = patches.mean(dim=0)
    clipped = float(((img == 0.0) | (img == 255.0)).to(torch.float64).mean()) >= CLIPPED_FRACTION
    start = torch.ones_like(mean, dtype=torch.bool)
    if clipped:  # start without patches holding a clipped pixel (a white sky would say sigma 0)
        unclipped = ((patches > 0.0) & (patches < 255.0)).all(dim=0)
        if int(unclipped.sum()) > 4 * patches.shape[0]:
            start = unclipped
    variance = _smallest_eigenvalue(patches[:, start], clipped)
    threshold = _texture_quantile()
    keep = torch.ones_like(start)
    for _ in range(ITERATIONS - 1):
        keep &= texture < variance * threshold
        if clipped:  # patches whose mean is this close to 0 or 255 lose noise to clipping
            margin = 2.0 * math.sqrt(variance)
            keep &= (mean > margin) & (mean < 255.0 - margin)
        if int(keep.sum()) <= 2 * patches.shape[0]:
            break
        variance = _smallest_eigenvalue(patches[:, keep], clipped)
    return variance


def _smallest_eigenvalue(patches: torch.Tensor, few: bool) -> float:
    """The smallest eigenvalue of the patches' covariance; ``few``: corrected for a small sample.

    With n patches of p pixels of white noise, the smallest sample eigenvalue sits near
    sigma^2 (1 - sqrt(p / n))^2 (the Marchenko-Pastur law's lower edge), not at sigma^2. With the
    many patches of an unclipped image, the texture left in them offsets that (measured on BSD68);
    clipped images keep few patches, where the correction matters.
    """
    p, n = patches.shape
    centred = patches - patches.mean(dim=1, keepdim=True)
    cov = centred @ centred.T / max(1, n - 1)
    smallest = max(0.0, float(torch.linalg.eigvalsh(cov)[0]))
    return smallest / (1.0 - math.sqrt(p / n)) ** 2 if few else smallest


@cache
def _texture_quantile() -> float:
    """The CONFIDENCE quantile of a flat patch's gradient energy, per unit of sigma^2.

    The energy is n' D'D n for white noise n; D'D (the patch's difference operator) has rank r and
    trace t, and the energy is modelled as Gamma(shape r/2, scale 2t/r), as in the paper.
    """
    eye = torch.eye(PATCH * PATCH, dtype=torch.float64).view(-1, 1, PATCH, PATCH)
    dh = (0.5 * (eye[..., :, 2:] - eye[..., :, :-2])).flatten(1)
    dv = (0.5 * (eye[..., 2:, :] - eye[..., :-2, :])).flatten(1)
    dd = dh @ dh.T + dv @ dv.T
    rank = int(torch.linalg.matrix_rank(dd))
    trace = float(torch.trace(dd))
    shape, scale = rank / 2.0, 2.0 * trace / rank
    return scale * _gamma_quantile(shape, CONFIDENCE)


def _gamma_quantile(shape: float, p: float) -> float:
    """The p-quantile of Gamma(shape, 1), by bisection on the regularised incomplete gamma."""
    a = torch.tensor(shape, dtype=torch.float64)
    lo, hi = 0.0, shape + 50.0 * math.sqrt(shape) + 50.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if float(torch.special.gammainc(a, torch.tensor(mid, dtype=torch.float64))) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
