"""The fixed-size autoencoders: the denoising autoencoder (``dae``) and the VAE (``vae``).

Images are resized to the model's size on request (the answer comes back in the original size);
a one-channel model denoises an RGB image channel by channel (three rows), a three-channel model
sees a gray image replicated; alpha is set aside and put back unchanged. Encode, score and
interpolate need one row per image, so they convert to the model's channels instead. Rows of
concurrent requests with the same operation and shape share a batch.

A VAE's draws (``encode?sample=true``, ``score``) come, image by image, from a generator seeded
by the request's seed and the image's pixels as the model sees them (``image_generators``): the
same image and seed draw the same noise whatever else is in the request, and wherever it is.

Cost: every decoded pixel plus every pixel the network produces (rows x height x width; a score
decodes ``k`` samples per image).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from PIL import Image

from app import images
from app.admission import Ticket
from app.batching import Check
from app.errors import ApiError
from app.kinds.base import DenoisedImage, DenoiseParams, EncodeParams, ServedModel
from app.kinds.inline import inline_or_thread
from app.kinds.schemas import Encoded, ImageSize, LatentResult, ModelCard
from app.runtime import GraphFn, Outputs, to_uint8, to_unit
from model.distributions import DiagonalGaussian
from model.scoring import iwae_nll

SCORE_CHUNK = 100  # importance samples per step of a score; the deadline is checked between them


def image_seed(seed: int, pixels: torch.Tensor) -> int:
    """The seed of one image's draws: a 64-bit BLAKE2b hash of its uint8 pixels (a CPU tensor, the
    image as the model sees it) keyed by the request's ``seed``."""
    key = seed.to_bytes(8, "little")
    digest = hashlib.blake2b(pixels.numpy().tobytes(), digest_size=8, key=key).digest()
    return int.from_bytes(digest, "little")


def image_generators(rows: torch.Tensor, seed: int,
                     device: torch.device | str = "cpu") -> list[torch.Generator]:
    """A generator per image row (N, C, H, W uint8), seeded by ``image_seed``: an image's draws
    depend on the seed and its pixels alone, not on the images sent beside it or its place."""
    return [torch.Generator(device=device).manual_seed(image_seed(seed, row)) for row in rows]


@dataclass(slots=True)
class Prepared:
    """One decoded image as model rows, and what is needed to turn the output back into it."""

    rows: torch.Tensor  # (R, C_model, H, W) uint8
    size: tuple[int, int]  # original (width, height)
    mode: str  # original mode: L, LA, RGB or RGBA
    alpha: Image.Image | None
    per_channel: bool


class Autoencoder(ServedModel):
    """The denoising autoencoder: denoise, encode to ``z``, decode, interpolate."""

    kind: ClassVar[str] = "dae"
    operations: ClassVar[tuple[str, ...]] = ("denoise", "encode", "decode", "interpolate")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the model's images."""
        _, h, w = self.meta["input_shape"]
        return int(h), int(w)

    @property
    def pixels(self) -> int:
        h, w = self.size
        return h * w

    def card(self) -> ModelCard:
        h, w = self.size
        return super().card().model_copy(update={"size": ImageSize(height=h, width=w)})

    # ---- the runtime's graphs --------------------------------------------------------------
    def encode_graph(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.model.encode(to_unit(x)),)

    def graphs(self) -> Mapping[str, GraphFn]:
        model = self.model
        return {
            "denoise": lambda x: to_uint8(model.denoise(to_unit(x))),
            "encode": self.encode_graph,
            "decode": lambda z: to_uint8(model.decode(z)),
        }

    def examples(self) -> Mapping[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(0)
        image = torch.randint(0, 256, (3, *self.meta["input_shape"]), dtype=torch.uint8,
                              generator=gen)
        return {"denoise": image, "encode": image,
                "decode": torch.randn(3, self.latent_dim or 1, generator=gen)}

    def _run(self, op: str) -> Callable[[torch.Tensor], Outputs]:
        run = self.runtime.run

        def fn(x: torch.Tensor) -> Outputs:
            return run(op, x)

        return fn

    # ---- images -> rows --------------------------------------------------------------------
    def _rows_per_image(self, p: images.Probe, keep_color: bool) -> int:
        return 3 if keep_color and self.channels == 1 and p.bands == 3 else 1

    def cost(self, probes: list[images.Probe], keep_color: bool, samples: int = 1) -> int:
        return sum(p.pixels + self._rows_per_image(p, keep_color) * samples * self.pixels
                   for p in probes)

    def denoise_cost(self, width: int, height: int, bands: int) -> int | None:
        return self.cost([images.Probe(None, b"", None, width, height, bands, 1)], keep_color=True)

    def prepare(self, img: images.Decoded, resize: bool, keep_color: bool) -> Prepared:
        """A decoded image -> model rows; ``keep_color=False`` gives one row in the model's channels."""
        h, w = self.size
        if img.size != (w, h) and not resize:
            raise ApiError(
                422,
                "wrong_size",
                f"model {self.name} takes {w}x{h} images; this one is {img.width}x{img.height}. "
                "Send resize=true to have it resized to fit (denoise then answers in the "
                "original size).",
            )
        # a one-channel model takes an RGB image's channels as three rows (keep_color)
        per_channel = self.channels == 1 and keep_color and img.mode in ("RGB", "RGBA")
        mode = "RGB" if per_channel or self.channels == 3 else "L"
        alpha = None
        if img.size == (w, h) and img.mode == mode:
            planes = img.planes()  # already the model's size and mode: no Pillow image made
        else:
            base, alpha = images.split_alpha(img.image)
            if base.size != (w, h):
                base = base.resize((w, h), Image.Resampling.LANCZOS)
            if base.mode != mode:
                base = base.convert(mode)
            planes = images.to_planes(base)  # contiguous, so both views below are too
        rows = planes[:, None] if per_channel else planes[None]
        return Prepared(torch.from_numpy(rows), img.size, img.mode, alpha, per_channel)

    async def _rows(self, datas: list[bytes], resize: bool, keep_color: bool, ticket: Ticket,
                    samples: int = 1) -> list[Prepared]:
        probes = await self.probe_all(datas)
        self.admit(ticket, self.cost(probes, keep_color, samples))
        # each image decoded and prepared in turn: one decoded image alive at a time
        return await inline_or_thread("decode", sum(p.pixels for p in probes), lambda: [
            self._prepare_upload(p, resize, keep_color) for p in probes],
            nbytes=sum(len(p.data) for p in probes))

    def _prepare_upload(self, p: images.Probe, resize: bool, keep_color: bool) -> Prepared:
        """``prepare`` of one upload: a wrong size among several names the image, as a 415 does."""
        img = images.decode(p)
        with images.naming(p.data):
            return self.prepare(img, resize, keep_color)

    @staticmethod
    def _stack(preps: list[Prepared]) -> torch.Tensor:
        return preps[0].rows if len(preps) == 1 else torch.cat([p.rows for p in preps])

    # ---- rows -> images --------------------------------------------------------------------
    def _to_png(self, prep: Prepared, out: torch.Tensor) -> DenoisedImage:
        planes = out[:, 0].numpy() if prep.per_channel else out[0].numpy()  # uint8
        level = self.settings.png_compress_level
        width, height = prep.size
        if prep.alpha is None and planes.shape == (len(prep.mode), height, width):
            # the planes are the answer as they are: L from L, RGB from RGB
            return DenoisedImage(images.planes_png(planes, level), width, height, prep.mode)
        img = images.from_planes(planes)
        if img.size != prep.size:
            img = img.resize(prep.size, Image.Resampling.BICUBIC)
        base_mode = "L" if prep.mode in ("L", "LA") else "RGB"
        if img.mode != base_mode:
            img = img.convert(base_mode)
        png = images.encode_png(images.with_alpha(img, prep.alpha), level)
        return DenoisedImage(png, width, height, prep.mode)

    # ---- operations ------------------------------------------------------------------------
    async def denoise(self, datas: list[bytes], params: DenoiseParams,
                      ticket: Ticket) -> list[DenoisedImage]:
        if params.sigma is not None:
            raise ApiError(422, "invalid_request",
                           f"sigma applies to photo models only; {self.name} is a {self.kind}")
        preps = await self._rows(datas, params.resize, True, ticket)
        rows = self._stack(preps)
        out = await self.batcher.run(self._run("denoise"), rows, ("denoise", *rows.shape[1:]),
                                     ticket)
        outs = [out[0]] if len(preps) == 1 else list(out[0].split([p.rows.shape[0] for p in preps]))
        pairs = list(zip(preps, outs, strict=True))
        pixels = sum(p.size[0] * p.size[1] for p in preps)  # the answers', in the original sizes
        return await inline_or_thread("encode", pixels,
                                     lambda: [self._to_png(p, o) for p, o in pairs])

    async def _encode_rows(self, datas: list[bytes], resize: bool, ticket: Ticket) -> Outputs:
        return await self._encode(self._stack(await self._rows(datas, resize, False, ticket)), ticket)

    async def _encode(self, rows: torch.Tensor, ticket: Ticket) -> Outputs:
        return await self.batcher.run(self._run("encode"), rows, ("encode", *rows.shape[1:]),
                                      ticket)

    async def encode(self, datas: list[bytes], params: EncodeParams, ticket: Ticket) -> Encoded:
        if params.sample:
            raise ApiError(422, "invalid_request",
                           f"sample=true needs a VAE; {self.name} is a {self.kind}")
        (z,) = await self._encode_rows(datas, params.resize, ticket)
        return Encoded([LatentResult(z=row) for row in z.tolist()])

    async def interpolate_ends(self, datas: list[bytes], resize: bool,
                               ticket: Ticket) -> torch.Tensor:
        return (await self._encode_rows(datas, resize, ticket))[0]

    async def interpolate(self, ends: torch.Tensor, steps: int, ticket: Ticket) -> torch.Tensor:
        """The straight path from ``ends[0]`` to ``ends[1]`` in ``steps`` even steps, decoded."""
        t = torch.linspace(0.0, 1.0, steps)[:, None]
        return await self.decode((1 - t) * ends[0] + t * ends[1], ticket)

    async def decode(self, z: torch.Tensor, ticket: Ticket) -> torch.Tensor:
        self.admit(ticket, z.shape[0] * self.pixels)
        (out,) = await self.batcher.run(self._run("decode"), z, ("decode", z.shape[1]), ticket)
        return out


class VariationalAutoencoder(Autoencoder):
    """The VAE: encode to the posterior (μ, σ), sample from the prior, score by the IWAE bound."""

    kind: ClassVar[str] = "vae"
    operations: ClassVar[tuple[str, ...]] = (
        "denoise", "encode", "decode", "sample", "score", "interpolate"
    )

    def encode_graph(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        posterior = self.model.encode(to_unit(x))
        return posterior.mean, posterior.logvar

    async def warm_up_extra(self) -> None:
        x = torch.zeros(1, *self.meta["input_shape"], dtype=torch.uint8)
        await self.batcher.call_on_thread(self._score, (x, 2, 0), lambda: None)

    async def encode(self, datas: list[bytes], params: EncodeParams, ticket: Ticket) -> Encoded:
        rows = self._stack(await self._rows(datas, params.resize, False, ticket))
        posterior = DiagonalGaussian(*await self._encode(rows, ticket))
        results = [LatentResult(mu=m, sigma=s, logvar=lv) for m, s, lv in zip(
            posterior.mean.tolist(), posterior.std.tolist(), posterior.logvar.tolist(), strict=True)]
        if not params.sample:
            return Encoded(results)
        seed = secrets.randbits(63) if params.seed is None else params.seed
        # on the CPU, each image's from its own generator: same image and seed, same z
        eps = torch.cat([torch.randn(1, posterior.mean.shape[1], generator=gen)
                         for gen in image_generators(rows, seed)])
        z = posterior.mean + posterior.std * eps
        for item, row in zip(results, z.tolist(), strict=True):
            item.z = row
        return Encoded(results, seed)

    def _sample(self, request: tuple[int, int, float], check: Check) -> torch.Tensor:
        """Same seed, same z: z is drawn on the CPU from a seeded generator, then decoded."""
        n, seed, temperature = request
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent_dim or 1, generator=gen) * temperature
        return self.runtime.run("decode", z)[0]

    async def sample(self, n: int, seed: int, temperature: float, ticket: Ticket) -> torch.Tensor:
        self.admit(ticket, n * self.pixels)
        return await self.batcher.run_alone(self._sample, (n, seed, temperature), ticket)

    def _score(self, request: tuple[torch.Tensor, int, int], check: Check) -> Outputs:
        x, k, seed = request  # x: the images' rows on the CPU, one per image
        # image by image, each with its own generator: an image's score is the one it gets alone
        scores = [iwae_nll(self.model, to_unit(row[None].to(self.device)), k, chunk=SCORE_CHUNK,
                           generator=gen, check=check)
                  for row, gen in zip(x, image_generators(x, seed, self.device), strict=True)]
        nll, neg_elbo = (torch.cat(values) for values in zip(*scores, strict=True))
        return nll.float().cpu(), neg_elbo.float().cpu()

    async def score(self, datas: list[bytes], resize: bool, k: int, seed: int,
                    ticket: Ticket) -> tuple[list[float], list[float]]:
        rows = self._stack(await self._rows(datas, resize, False, ticket, samples=k))
        nll, neg_elbo = await self.batcher.run_alone(self._score, (rows, k, seed), ticket)
        return nll.tolist(), neg_elbo.tolist()
