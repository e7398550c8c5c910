"""The served model: what every kind shares (checkpoint, runtime, batcher, work budget, card).

Each kind of model is one subclass (``app/kinds/autoencoder.py``, ``app/kinds/photo.py``) that says,
once, which operations it supports, how an image becomes model rows, what a request costs in work
units, and how its batches run. Routers call the operation methods; nothing outside a kind's module
asks which kind a model is. An operation a kind lacks answers 422 ``unsupported_operation``.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from starlette.requests import Request

from app import images
from app.admission import Ticket, WorkBudget
from app.batching import Batcher
from app.errors import ApiError
from app.kinds.inline import inline_or_thread
from app.kinds.schemas import Encoded, ModelCard
from app.metrics import ModelMetrics
from app.runtime import GraphFn, Runtime, TorchRuntime, build_runtime
from app.settings import Settings
from model.checkpoint import Checkpoint, load_checkpoint

log = logging.getLogger("aeserve")

WORK_REFERENCE = (2048, 1536)  # a 3-megapixel 4:3 photo: where a work estimate starts
WORK_ASPECTS = tuple(1 + (16 / 9 - 1) * i / 24 for i in range(25))  # 1:1 to 16:9, either way round
WORK_NEAR_LIMIT = tuple(0.7 + 0.025 * i for i in range(17))  # 70 to 110 % of the pixels that fit
WORK_HEADROOM = 1.01  # for the sizes between those sampled: the cost is a step function of them


@dataclass(slots=True)
class DenoisedImage:
    png: bytes
    width: int
    height: int
    mode: str
    noise_sigma: float | None = None  # the σ used (0-255 scale), for models that take one


@dataclass(frozen=True, slots=True)
class DenoiseParams:
    resize: bool = False
    sigma: float | None = None


@dataclass(frozen=True, slots=True)
class EncodeParams:
    resize: bool = False
    sample: bool = False
    seed: int | None = None


def onnx_failures() -> tuple[type[Exception], ...]:
    """What building the ONNX Runtime raises when it cannot run a model's graphs: the exporter
    refuses an operator (``OnnxExporterError``), ONNX Runtime refuses the graph (its own errors),
    or its answers differ from torch's (``ValueError``). Anything else, a bug in a graph
    function included, is not a reason to fall back to torch: it propagates."""
    failures: tuple[type[Exception], ...] = (torch.onnx.errors.OnnxExporterError, ValueError)
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as ort
    except ImportError:  # not installed: nothing of it can fail
        return failures
    return (*failures, ort.Fail, ort.InvalidArgument, ort.InvalidGraph, ort.InvalidProtobuf,
            ort.NotImplemented, ort.RuntimeException, ort.EPFail)


class ServedModel:
    """A loaded checkpoint, ready to serve. Subclasses set ``kind`` and ``operations``."""

    kind: ClassVar[str]
    operations: ClassVar[tuple[str, ...]] = ()
    any_size: ClassVar[bool] = False
    takes_sigma: ClassVar[bool] = False  # denoise takes the input's noise level (``sigma``)

    @staticmethod
    def load(folder: Path, device: str | torch.device, meta: dict[str, Any]) -> Checkpoint:
        """Load the kind's checkpoint folder (hash and shapes verified, no pickle), building it
        from ``meta``, its config.json as already read."""
        return load_checkpoint(folder, device, meta)

    def __init__(self, checkpoint: Checkpoint, device: str, settings: Settings,
                 metrics: ModelMetrics) -> None:
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        self.settings = settings
        self.metrics = metrics
        self.model: Any = checkpoint.model  # the network class of the kind (duck-typed)
        self.model.requires_grad_(False)
        self.runtime = self._build_runtime()
        self.batcher = Batcher(
            self.name,
            max_batch_size=settings.max_batch_size,
            max_delay_s=settings.max_batch_delay_ms / 1000.0,
            metrics=metrics,
        )
        self.budget = WorkBudget(
            self.name, settings.queue_work_units, settings.max_work_units, metrics
        )
        self.loaded_at = time.time()
        self.load_seconds = 0.0
        self.warm = False
        # what GET /v1/models lists, worked out as the model loads, not per request
        self.work_per_pixel = self.denoise_work_per_pixel()

    # ---- what the checkpoint says ----------------------------------------------------------
    @property
    def name(self) -> str:
        return self.checkpoint.name

    @property
    def meta(self) -> dict[str, Any]:
        return self.checkpoint.meta

    @property
    def channels(self) -> int:
        return int(self.meta["input_shape"][0])

    @property
    def latent_dim(self) -> int | None:
        value = self.meta.get("latent_dim")
        return int(value) if value is not None else None

    def supports(self, operation: str) -> bool:
        return operation in self.operations

    def card(self) -> ModelCard:
        """Everything a client needs to call the model, and where it came from."""
        meta = self.meta
        config = meta.get("config", {})
        return ModelCard(
            name=self.name,
            kind=self.kind,
            input_shape=meta["input_shape"],
            channels=self.channels,
            size=None,
            any_size=self.any_size,
            takes_sigma=self.takes_sigma,
            latent_dim=self.latent_dim,
            operations=list(self.operations),
            device=str(self.device),
            runtime=self.runtime.name,
            sha256=self.checkpoint.sha256,
            loaded_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
            ready=self.warm,
            value_range=meta.get("value_range", [0.0, 1.0]),
            likelihood=meta.get("likelihood"),
            load_seconds=round(self.load_seconds, 4),
            torch_version=meta.get("torch_version"),
            recipe={k: config.get(k) for k in ("model", "noise", "train")},
            dataset=meta.get("dataset"),
            training={k: v for k, v in meta.get("training", {}).items() if k != "history"},
            evaluation=meta.get("evaluation"),
        )

    # ---- the runtime -----------------------------------------------------------------------
    def _build_runtime(self) -> Runtime:
        settings = self.settings
        choice = settings.resolve_runtime(str(self.device))
        graphs, examples = self.graphs(), self.examples()  # a bug in these is no ONNX failure
        try:
            return build_runtime(choice, self.model, graphs, examples, self.device,
                                 settings.torch_threads)
        except onnx_failures() as exc:
            if settings.runtime == "onnxruntime":  # asked for by name: do not start without it
                raise
            log.warning("%s: ONNX Runtime not used (%s: %s); serving with torch",
                        self.name, type(exc).__name__, exc)
            return TorchRuntime(graphs, self.device)

    def graphs(self) -> Mapping[str, GraphFn]:
        """The tensor operations a runtime runs (uint8 images or float latents in and out)."""
        return {}

    def examples(self) -> Mapping[str, torch.Tensor]:
        """One small input per graph: ONNX export traces it, warm-up runs it."""
        return {}

    async def warm_up(self) -> None:
        """Run every operation once on the model thread: the first request pays no setup cost."""
        start = time.perf_counter()
        for op, example in self.examples().items():
            await self.batcher.call_on_thread(self.runtime.run, op, example)
        await self.warm_up_extra()
        self.load_seconds += time.perf_counter() - start
        self.warm = True

    async def warm_up_extra(self) -> None:
        """Operations that run outside the runtime's graphs (tiled photos, scores)."""

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self, on_dead: Callable[[], None] | None = None) -> None:
        """Start serving; ``on_dead()`` if the batch worker ever stops by a bug."""
        self.batcher.start(on_dead)

    async def stop(self, error: ApiError) -> None:
        self.budget.close(error)
        await self.batcher.stop(error)

    # ---- a request -------------------------------------------------------------------------
    def ticket(self, request: Request) -> Ticket:
        """A new request's ticket (``with served.ticket(request) as ticket:``): its deadline
        starts now; 503 at once, before the body is read, when the model's work budget is full."""
        ticket = Ticket(self.settings.request_timeout_s, request.receive, request.scope)
        self.budget.open(ticket)
        return ticket

    # ---- images in -------------------------------------------------------------------------
    async def probe_all(self, datas: list[bytes]) -> list[images.Probe]:
        """Every upload's header: size and bands known, no pixel decoded yet (in the threadpool
        past ``INLINE_BYTES``: a header can hide behind megabytes of chunks)."""
        limit = self.settings.max_pixels
        return await inline_or_thread("probe", 0, lambda: [images.probe(d, limit) for d in datas],
                                      nbytes=sum(len(d) for d in datas))

    def admit(self, ticket: Ticket, cost: int) -> None:
        self.budget.admit(ticket, cost)

    def denoise_cost(self, width: int, height: int, bands: int) -> int | None:
        """The work units denoising one ``width`` x ``height`` image of ``bands`` colour bands
        (1 or 3) costs, as admission counts them; None for a kind that does not denoise."""
        return None

    def denoise_work_per_pixel(self) -> dict[str, float] | None:
        """Work units per input pixel of a denoise, gray and colour: what a client multiplies an
        image's pixels by to tell, before sending, whether it fits ``AESERVE_MAX_WORK``; None
        for a kind that does not denoise.

        Tiling makes the true figure vary with the size (a few percent for photos, in steps), so
        this is the largest over the images about the limit's size, where the answer matters
        (``WORK_NEAR_LIMIT`` of the pixels that fit at ``WORK_REFERENCE``'s figure, at each of
        ``WORK_ASPECTS`` either way round), with ``WORK_HEADROOM`` for the sizes in between and
        rounded up: pixels times it is not below what admission counts there.
        """
        factors = {}
        for name, bands in (("gray", 1), ("colour", 3)):
            width, height = WORK_REFERENCE
            reference = self.denoise_cost(width, height, bands)
            if reference is None:
                return None
            fit = self.settings.max_work_units * width * height / reference
            worst = 0.0
            for aspect, share in itertools.product(WORK_ASPECTS, WORK_NEAR_LIMIT):
                w = max(1, round(math.sqrt(fit * share * aspect)))
                h = max(1, round(fit * share / w))
                for size in ((w, h), (h, w)):
                    worst = max(worst, (self.denoise_cost(*size, bands) or 0) / (size[0] * size[1]))
            factors[name] = math.ceil(worst * WORK_HEADROOM * 1e4) / 1e4
        return factors

    # ---- operations: a kind overrides those it supports ------------------------------------
    def unsupported(self, operation: str) -> ApiError:
        return ApiError(
            422,
            "unsupported_operation",
            f"model {self.name} is a {self.kind} model and cannot {operation}; "
            f"it supports: {', '.join(self.operations)}",
        )

    async def denoise(self, datas: list[bytes], params: DenoiseParams,
                      ticket: Ticket) -> list[DenoisedImage]:
        raise self.unsupported("denoise")

    async def encode(self, datas: list[bytes], params: EncodeParams, ticket: Ticket) -> Encoded:
        raise self.unsupported("encode")

    async def score(self, datas: list[bytes], resize: bool, k: int, seed: int,
                    ticket: Ticket) -> tuple[list[float], list[float]]:
        raise self.unsupported("score")

    async def decode(self, z: torch.Tensor, ticket: Ticket) -> torch.Tensor:
        raise self.unsupported("decode")

    async def sample(self, n: int, seed: int, temperature: float, ticket: Ticket) -> torch.Tensor:
        raise self.unsupported("sample")

    async def interpolate_ends(self, datas: list[bytes], resize: bool,
                               ticket: Ticket) -> torch.Tensor:
        raise self.unsupported("interpolate")

    async def interpolate(self, ends: torch.Tensor, steps: int, ticket: Ticket) -> torch.Tensor:
        """The images along the path between two latents ``ends`` (2, latent), ends included."""
        raise self.unsupported("interpolate")
