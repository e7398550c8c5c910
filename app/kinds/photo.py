"""The photo denoiser: real photographs of any size, gray or colour, with an optional noise σ.

One image is one job that runs alone on the model thread, tile by tile; the request's ticket is
checked before every tile, so a deadline, a disconnect or a shutdown stops the remaining tiles.
Cost: every decoded pixel plus what the network processes (tiles with their overlap and margins,
each convolution's padding at every level, every colour pass), as
``model.photo.inference.work_pixels`` counts it. The answer's
``X-Noise-Sigma`` is the σ used: the client's when given, else a blind estimate from the input; the
network is told at most ``sigma_cap`` (its training range's top, on its card).
The photo network runs on torch whatever ``AESERVE_RUNTIME`` says (its card shows ``torch``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image

from app import images
from app.admission import Ticket
from app.batching import Check
from app.kinds.base import DenoisedImage, DenoiseParams, ServedModel
from app.kinds.inline import inline_or_thread
from app.kinds.schemas import PhotoCard
from app.runtime import to_uint8, to_unit
from model.checkpoint import Checkpoint
from model.photo.inference import denoise_image, sigma_cap, work_pixels
from model.photo.pair import colour_sha256, load_photo

WARM_SIZE = 64


class PhotoDenoiser(ServedModel):
    kind: ClassVar[str] = "photo"
    operations: ClassVar[tuple[str, ...]] = ("denoise",)
    any_size: ClassVar[bool] = True
    takes_sigma: ClassVar[bool] = True

    @staticmethod
    def load(folder: Path, device: str | torch.device, meta: dict[str, Any]) -> Checkpoint:
        """The folder's gray network, with its pinned colour network when it has one."""
        return load_photo(folder, device, meta)

    @property
    def sigma_cap(self) -> float:
        """The highest σ the network is told: the top of the noise range it was trained on."""
        return sigma_cap(self.checkpoint.config)

    def card(self) -> PhotoCard:
        return PhotoCard(**super().card().model_dump(), sigma_cap=self.sigma_cap,
                         colour_sha256=colour_sha256(self.meta))

    def cost(self, p: images.Probe) -> int:
        return p.pixels + work_pixels(self.model, p.height, p.width, p.bands)

    def denoise_cost(self, width: int, height: int, bands: int) -> int | None:
        return self.cost(images.Probe(None, b"", None, width, height, bands, 1))

    def _denoise(self, request: tuple[torch.Tensor, float | None],
                 check: Check) -> tuple[torch.Tensor, float | None]:
        x, sigma = request
        y, used = denoise_image(self.model, to_unit(x.to(self.device)), sigma=sigma, check=check,
                                cap=self.sigma_cap)
        return to_uint8(y).cpu(), used

    async def warm_up_extra(self) -> None:
        for channels in (1, 3):  # a gray and a colour photo: each network of a pair runs once
            x = torch.zeros(1, channels, WARM_SIZE, WARM_SIZE, dtype=torch.uint8)
            await self.batcher.call_on_thread(self._denoise, (x, None), lambda: None)

    @staticmethod
    def _rows(p: images.Probe) -> tuple[images.Decoded, Image.Image | None, torch.Tensor]:
        """The decoded image, its alpha set aside, and its colour planes as one row."""
        img = images.decode(p)
        base, alpha = images.split_alpha(img.image)
        return img, alpha, torch.from_numpy(images.to_planes(base))[None]

    def _to_png(self, img: images.Decoded, alpha: Image.Image | None, out: torch.Tensor,
                sigma: float | None) -> DenoisedImage:
        result = images.with_alpha(images.from_planes(out[0].numpy()), alpha)
        png = images.encode_png(result, self.settings.png_compress_level)
        return DenoisedImage(png, img.width, img.height, img.mode, sigma)

    async def denoise(self, datas: list[bytes], params: DenoiseParams,
                      ticket: Ticket) -> list[DenoisedImage]:
        probes = await self.probe_all(datas)
        self.admit(ticket, sum(self.cost(p) for p in probes))
        answers = []
        for p in probes:  # one image at a time: bounded memory
            img, alpha, rows = await inline_or_thread("decode", p.pixels, partial(self._rows, p),
                                                      nbytes=len(p.data))
            out, sigma = await self.batcher.run_alone(self._denoise, (rows, params.sigma), ticket)
            answers.append(await inline_or_thread(
                "encode", p.pixels, partial(self._to_png, img, alpha, out, sigma)))
        return answers
