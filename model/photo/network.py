"""The photo denoiser's network: a small residual U-Net (or a DnCNN-style plain stack).

Shapes come from the config: ``hidden`` lists the channel width of each resolution level (one entry:
a DnCNN-style stack of ``depth`` convolutions at full resolution; several entries: a U-Net whose
level ``i`` works at 1/2**i of the resolution with ``depth`` 3x3 convolutions per level on each side
and a bottleneck of ``depth`` convolutions). Either way the network predicts the noise and the
output is ``x - noise`` (residual learning).

Besides the ``channels`` image planes the network reads two constant planes: a flag that says whether
the noise level is known and the level itself (0-1 scale, 0 when unknown). Blind use passes no level;
the same weights take the level when a client knows it.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig

COND_CHANNELS = 2  # known-flag plane and noise-level plane


def _convs(c: int, n: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for _ in range(n):
        layers += [nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True)]
    return layers


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


class PhotoDenoiser(nn.Module):
    """Fully convolutional blind denoiser for images in [0, 1]: ``forward(x, level=None) -> x_hat``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if not cfg.hidden or cfg.depth < 1:
            raise ValueError("photo denoiser needs at least one hidden width and depth >= 1")
        self.cfg = cfg
        widths = list(cfg.hidden)
        c_in = cfg.channels + COND_CHANNELS
        self.levels = len(widths)
        self.head = nn.Sequential(nn.Conv2d(c_in, widths[0], 3, padding=1), nn.ReLU(inplace=True))
        if self.levels == 1:  # DnCNN-style: head, depth-2 convs, tail
            self.body = nn.Sequential(*_convs(widths[0], max(cfg.depth - 2, 0)))
            self.enc = nn.ModuleList()
            self.down = nn.ModuleList()
            self.up = nn.ModuleList()
            self.dec = nn.ModuleList()
        else:
            self.enc = nn.ModuleList(nn.Sequential(*_convs(c, cfg.depth)) for c in widths[:-1])
            self.down = nn.ModuleList(
                nn.Sequential(nn.Conv2d(a, b, 2, stride=2), nn.ReLU(inplace=True))
                for a, b in itertools.pairwise(widths)
            )
            self.body = nn.Sequential(*_convs(widths[-1], cfg.depth))
            self.up = nn.ModuleList(
                nn.ConvTranspose2d(b, a, 2, stride=2)
                for a, b in itertools.pairwise(widths)
            )
            self.dec = nn.ModuleList(nn.Sequential(*_convs(c, cfg.depth)) for c in widths[:-1])
        self.tail = nn.Conv2d(widths[0], cfg.channels, 3, padding=1)
        nn.init.normal_(self.tail.weight, std=1e-3)
        if self.tail.bias is not None:
            nn.init.zeros_(self.tail.bias)

    @property
    def multiple(self) -> int:
        """Input sizes are padded internally to a multiple of this."""
        return 2 ** (self.levels - 1)

    @property
    def context(self) -> int:
        """How far beyond a block of output the input it depends on reaches, in pixels, for a block
        aligned on the downsampling grid (``multiple``): the overlap that makes tiles cut on that
        grid equal the whole image.

        Worked out from the layers, walking back from the output along the deepest path (the skip
        connections reach less far): each 3x3 convolution at level ``i`` widens the span by 2**i
        on each side; a transposed convolution from level ``i + 1`` rounds it out to whole blocks
        of 2**(i + 1) pixels; a stride-2 convolution reads just its block (no widening).
        """
        lo, hi = 0, self.multiple  # the output block [lo, hi)
        lo, hi = lo - 1, hi + 1  # tail
        if self.levels == 1:
            lo, hi = lo - len(self.body) // 2, hi + len(self.body) // 2  # conv, ReLU pairs
        else:
            depth = self.cfg.depth
            for i in range(self.levels - 1):  # decoder, fine to coarse
                lo, hi = lo - depth * 2**i, hi + depth * 2**i
                block = 2 ** (i + 1)
                lo, hi = lo // block * block, -(-hi // block) * block
            lo, hi = lo - depth * self.multiple, hi + depth * self.multiple  # bottleneck
            reach = depth * (self.multiple - 1)  # encoder: depth convs at every finer level
            lo, hi = lo - reach, hi + reach
        lo, hi = lo - 1, hi + 1  # head
        return max(-lo, hi - self.multiple)

    def condition(self, x: torch.Tensor, level: torch.Tensor | None) -> torch.Tensor:
        """Append the known-flag and noise-level planes.

        ``level``: None (blind) or one level per item, shape (B,) or (B, 1, 1, 1), on the 0-1 scale;
        NaN entries mark the items whose level is unknown.
        """
        b, _, h, w = x.shape
        if level is None:
            return torch.cat([x, x.new_zeros(b, COND_CHANNELS, h, w)], dim=1)
        lv = level.to(x).reshape(b, 1, 1, 1)
        known = ~torch.isnan(lv)
        flag = known.to(x).expand(b, 1, h, w)
        value = torch.where(known, lv, torch.zeros_like(lv)).expand(b, 1, h, w)
        return torch.cat([x, flag, value], dim=1)

    def noise(self, x: torch.Tensor, level: torch.Tensor | None = None) -> torch.Tensor:
        """The predicted noise of ``x`` (B, C, H, W), any H and W."""
        x, h, w = _pad_to_multiple(x, self.multiple)
        feats = self.head(self.condition(x, level))
        skips = []
        for enc, down in zip(self.enc, self.down, strict=True):
            feats = enc(feats)
            skips.append(feats)
            feats = down(feats)
        feats = self.body(feats)
        for i in reversed(range(len(self.up))):
            feats = self.dec[i](self.up[i](feats) + skips[i])
        return self.tail(feats)[..., :h, :w]

    def forward(self, x: torch.Tensor, level: torch.Tensor | None = None) -> torch.Tensor:
        return x - self.noise(x, level)
