"""Inference with the photo denoiser: any size, gray or colour, in overlapping tiles.

Gray and colour images on gray and colour networks: ``model.photo.colour`` (one pass for RGB on a
colour network, five on a gray one); a ``PhotoPair`` (``model.photo.pair``) sends each image to
the network of its kind.

Borders: each side gets a mirrored margin of up to ``MARGIN`` pixels (never more than the side minus
one, so a 1-pixel side gets none and a thin strip is not padded up to a square), cropped after the
network. Tiles: the padded image is cut into equal cores of about ``tile`` x ``tile`` pixels (a
side up to 1/8 longer than ``tile`` stays whole; a thin image gets long, flat tiles of the same
area), each run with ``overlap`` pixels of real context on every side, and only the core is kept.
Tile origins sit on the network's downsampling grid, so a tiled result differs from the
whole-image result only through the context cut beyond ``overlap`` pixels: by default
(``overlap_for``) at least the network's ``context``, all it reaches, so none is cut.

``work_pixels`` counts what the network really processes (tiles with their context, margins and
the network's own padding to its downsampling grid, every pass), in pixels of a large image: every
convolution runs over its zero-padded input, so a tile also costs the one-pixel border of each of its
3x3 convolutions at each resolution level. That border adds a few percent to a square tile and
about two thirds to a thin one (an 8-pixel-wide tile is 1 pixel wide at the coarsest level of a
4-level U-Net, where its convolutions run over 3 columns). The request's cost.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from model.config import RunConfig
from model.photo.colour import planes_for
from model.photo.network import PhotoDenoiser
from model.photo.noise_level import estimate_noise_sigma
from model.photo.pair import PhotoPair

__all__ = ["denoise_image", "estimate_noise_sigma", "sigma_cap", "work_pixels"]

SIGMA_CAP = 55.0  # the top of the shipped recipes' noise range (0-255 scale): the default cap
DEFAULT_TILE = 512
# the least context around a tile; a network that reaches further gets its ``context`` (``overlap_for``)
DEFAULT_OVERLAP = 48
MARGIN = 16  # mirrored border, cropped after the network

Check = Callable[[], None]


def margins(height: int, width: int) -> tuple[int, int]:
    """The mirrored margin along each axis: ``MARGIN``, or less on a side too short to mirror it."""
    return min(MARGIN, height - 1), min(MARGIN, width - 1)


def pad_edges(x: torch.Tensor) -> torch.Tensor:
    """Mirror the margins of ``margins`` around (B, C, H, W): border artefacts land in them."""
    mh, mw = margins(x.shape[-2], x.shape[-1])
    return F.pad(x, (mw, mw, mh, mh), mode="reflect") if mh or mw else x


def sigma_cap(config: RunConfig) -> float:
    """The highest level the network is told (0-255 scale): the top of the noise range it was
    trained on (``noise.sigma_max``), as nothing above it was ever shown to it."""
    return config.noise.sigma_max * 255.0 if config.noise.sigma_max > 0.0 else SIGMA_CAP


def network_for(model: nn.Module, channels: int) -> PhotoDenoiser:
    """The network that denoises an image of ``channels`` planes: the model itself, or the
    matching half of a ``PhotoPair`` (gray network for gray, colour network for RGB)."""
    inner = model.module if hasattr(model, "module") else model
    if isinstance(inner, PhotoPair):
        inner = inner.for_channels(channels)
    if not isinstance(inner, PhotoDenoiser):
        raise TypeError(f"expected a PhotoDenoiser, got {type(inner).__name__}")
    return inner


def overlap_for(net: PhotoDenoiser) -> int:
    """The context a tile gets when the caller names none: ``DEFAULT_OVERLAP``, or the network's
    ``context`` where it reaches further, so that tiles equal the whole image for any config."""
    return max(DEFAULT_OVERLAP, net.context)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def tile_shape(height: int, width: int, tile: int, overlap: int, multiple: int) -> tuple[int, int, int]:
    """(tile height, tile width, overlap) for a (padded) image: cores on the downsampling grid.

    A side shorter than ``tile`` is one tile; the other side's tiles then grow so that a tile keeps
    about ``tile * tile`` pixels with its context (a 1-pixel strip is not cut into square tiles).
    """
    tile = max(multiple, (tile // multiple) * multiple)
    overlap = _round_up(max(overlap, 0), multiple)  # crop origins stay on the downsampling grid
    area = (tile + 2 * overlap) ** 2
    th, tw = tile, tile
    if height <= tile < width:
        th = height
        tw = max(tile, ((area // _round_up(height, multiple) - 2 * overlap) // multiple) * multiple)
    elif width <= tile < height:
        tw = width
        th = max(tile, ((area // _round_up(width, multiple) - 2 * overlap) // multiple) * multiple)
    return th, tw, overlap


Span = tuple[int, int, int, int]  # (crop_start, crop_end, core_start, core_end) along one axis


def spans(size: int, tile: int, overlap: int, multiple: int) -> list[Span]:
    """The ``Span``s along one axis of ``size`` pixels.

    Equal cores of about ``tile`` pixels on the downsampling grid; a side up to 1/8 longer than
    ``tile`` stays one span, so that the mirrored margin does not cost a sliver tile of its own.
    """
    count = max(1, -(-(size - tile // 8) // tile))
    if count == 1:
        return [(0, size, 0, size)]
    core = _round_up(-(-size // count), multiple)
    out = []
    for start in range(0, size, core):
        end = min(start + core, size)
        out.append((max(0, start - overlap), min(size, end + overlap), start, end))
    return out


def tiling(
    net: PhotoDenoiser, height: int, width: int, tile: int, overlap: int | None
) -> tuple[list[Span], list[Span]]:
    """How ``net`` cuts a (padded) image into tiles of about ``tile`` pixels, each with ``overlap``
    pixels of context (None: ``overlap_for(net)``): the ``spans`` of its rows and of its columns."""
    overlap = overlap_for(net) if overlap is None else overlap
    th, tw, overlap = tile_shape(height, width, tile, overlap, net.multiple)
    return spans(height, th, overlap, net.multiple), spans(width, tw, overlap, net.multiple)


def run_tiled(
    net: PhotoDenoiser,
    planes: torch.Tensor,
    level: torch.Tensor | None,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
    check: Check | None = None,
) -> torch.Tensor:
    """The network's output on (B, C, H, W), tile by tile, each with ``overlap`` pixels of context
    (None: ``overlap_for(net)``); ``check()`` before every forward."""
    _, _, h, w = planes.shape
    row_spans, col_spans = tiling(net, h, w, tile, overlap)
    if len(row_spans) == 1 and len(col_spans) == 1:
        return _one_at_a_time(net, planes, level, check)
    out = torch.empty_like(planes)
    for y0, y1, cy0, cy1 in row_spans:
        for x0, x1, cx0, cx1 in col_spans:
            result = _one_at_a_time(net, planes[..., y0:y1, x0:x1], level, check)
            out[..., cy0:cy1, cx0:cx1] = result[..., cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    return out


def _one_at_a_time(
    net: PhotoDenoiser, x: torch.Tensor, level: torch.Tensor | None, check: Check | None
) -> torch.Tensor:
    """One forward per image of the batch: the activations of a tile are held for one plane at a
    time (a colour photo on a gray network is five planes), which bounds the memory of any
    request by the tile size; ``check()`` before each."""
    outs = []
    for b in range(x.shape[0]):
        if check is not None:
            check()
        outs.append(net(x[b : b + 1], None if level is None else level[b : b + 1]))
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def convolutions(net: PhotoDenoiser) -> list[tuple[int, nn.Conv2d | nn.ConvTranspose2d]]:
    """Every convolution of the network with the level of its input (1/2**level of the resolution)."""
    parts: list[tuple[int, nn.Module]] = [(0, net.head), (0, net.tail), (net.levels - 1, net.body)]
    for i in range(len(net.down)):
        parts += [(i, net.enc[i]), (i, net.down[i]), (i + 1, net.up[i]), (i, net.dec[i])]
    return [(level, conv) for level, part in parts for conv in part.modules()
            if isinstance(conv, nn.Conv2d | nn.ConvTranspose2d)]


def conv_cost(conv: nn.Conv2d | nn.ConvTranspose2d) -> tuple[Fraction, int, int]:
    """(multiply-adds per pixel of its input, rows and columns of zero padding on each side)."""
    kh, kw = conv.kernel_size
    per_weight = Fraction(conv.in_channels * conv.out_channels * kh * kw, conv.groups)
    if isinstance(conv, nn.ConvTranspose2d):  # every input pixel spreads over kh x kw outputs
        return per_weight, 0, 0
    if isinstance(conv.padding, str):
        raise ValueError(f"padding={conv.padding!r} is not counted; give it in pixels")
    sh, sw = conv.stride
    return per_weight / (sh * sw), conv.padding[0], conv.padding[1]


ConvTable = tuple[list[tuple[int, int, int, int]], int]
_conv_tables: weakref.WeakKeyDictionary[PhotoDenoiser, ConvTable] = weakref.WeakKeyDictionary()


def conv_table(net: PhotoDenoiser) -> ConvTable:
    """(level, weight, padding rows, padding columns) of every convolution, and the network's
    weight per image pixel: weights are multiply-adds per input pixel, scaled by one common factor
    to whole numbers (exact, as ``Fraction`` is). Fixed by the network, so worked out once per
    network: a request's cost is priced on the event loop; a retired network drops its table."""
    table = _conv_tables.get(net)
    if table is None:
        convs = [(level, *conv_cost(conv)) for level, conv in convolutions(net)]
        per_pixel = [macs / 4**level for level, macs, _, _ in convs]
        scale = math.lcm(*(x.denominator for x in [*per_pixel, *(c[1] for c in convs)]))
        table = ([(level, int(macs * scale), ph, pw) for level, macs, ph, pw in convs],
                 int(sum(per_pixel, Fraction(0)) * scale))
        _conv_tables[net] = table
    return table


def grid_work(net: PhotoDenoiser, heights: list[int], widths: list[int]) -> int:
    """The work of one forward per tile of the grid ``heights`` x ``widths`` (sizes on the network's
    downsampling grid), in pixels of a large image.

    Each convolution counts its input with its zero padding, weighted by its share of the network's
    multiply-adds per image pixel: a large tile costs about its pixels, a thin one its halos too.
    """
    convs, per_pixel = conv_table(net)
    total = 0
    for level, weight, ph, pw in convs:
        rows = sum((h >> level) + 2 * ph for h in heights)
        cols = sum((w >> level) + 2 * pw for w in widths)
        total += weight * rows * cols
    return -(-total // per_pixel)


def work_pixels(
    model: nn.Module, height: int, width: int, channels: int,
    tile: int = DEFAULT_TILE, overlap: int | None = None,
) -> int:
    """What the network processes for one (channels, height, width) image: the request's cost.

    Tiles with their context and the mirrored margins, each padded up to the network's
    downsampling grid, with the padding of every convolution at every level (``grid_work``), times
    the passes (5 for colour on a gray network, else 1).
    """
    if height < 1 or width < 1:
        raise ValueError("image has no pixels")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    net = network_for(model, channels)
    m = net.multiple
    mh, mw = margins(height, width)
    h, w = height + 2 * mh, width + 2 * mw
    row_spans, col_spans = tiling(net, h, w, tile, overlap)
    rows = [_round_up(y1 - y0, m) for y0, y1, _, _ in row_spans]
    cols = [_round_up(x1 - x0, m) for x0, x1, _, _ in col_spans]
    return grid_work(net, rows, cols) * planes_for(net.cfg.channels).passes(channels)


@torch.no_grad()
def denoise_image(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float | None = None,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
    check: Check | None = None,
    cap: float = SIGMA_CAP,
) -> tuple[torch.Tensor, float | None]:
    """Denoise one image; returns ``(y, sigma_used)``.

    ``x``: float tensor (1, C, H, W) in [0, 1], C = 1 (gray) or 3 (RGB), any H, W >= 1.
    ``sigma``: the noise level on the 0-255 scale when the client knows it; None: blind, and
    ``estimate_noise_sigma(x)`` stands in for it. The network is told the level (clamped to
    [0, ``cap``]: ``sigma_cap`` of its checkpoint's config), or nothing for an image too small to
    estimate (its estimate is None). ``y`` has the shape of ``x``, in [0, 1]; ``sigma_used`` (0-255
    scale) is the client's sigma when given, else the estimate (None: unknown). ``check`` is
    called before every network forward (each tile, each plane) and whatever it raises propagates
    unchanged: the caller's way to stop at a deadline. Tiles of about ``tile`` pixels get
    ``overlap`` pixels of context (None: ``overlap_for``, which makes them equal the whole image).
    """
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected a (1, C, H, W) tensor with C = 1 or 3, got {tuple(x.shape)}")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError("image has no pixels")
    if sigma is not None and not (math.isfinite(sigma) and sigma >= 0.0):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
    net = network_for(model, x.shape[1])
    device = next(net.parameters()).device
    x = x.to(device=device, dtype=torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError("image holds NaN or infinite values")
    sigma_used = float(sigma) if sigma is not None else estimate_noise_sigma(x)
    channels = x.shape[1]
    view = planes_for(net.cfg.channels)
    # blind: the network is told the estimate (what that gains: docs/photo-denoiser.md)
    level = None
    if sigma_used is not None:  # an image too small to estimate gets no level
        scales = torch.tensor(view.level_scales(channels), device=device)
        level = scales * (min(sigma_used, cap) / 255.0)
    planes = view.split(x)
    h, w = planes.shape[-2:]
    mh, mw = margins(h, w)
    out = run_tiled(net, pad_edges(planes), level, tile, overlap, check)
    y = view.merge(out[..., mh : mh + h, mw : mw + w], channels)
    return y.clamp_(0.0, 1.0), sigma_used
