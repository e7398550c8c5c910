"""Image-in operations: denoise, encode, score. Each is decode -> predict -> encode."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import torch
from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app import codec, query
from app.deps import model_for, settings_of, supporting
from app.errors import ApiError
from app.inference import PhotoRequest, ScoreRequest
from app.inputs import read_images, wants
from app.pipeline import Prepared, decode_image, encode_image
from app.registry import ServedModel
from app.routing import raw_post
from app.settings import Settings

router = APIRouter(prefix="/v1/models/{name}", tags=["images"])

INLINE_BYTES = 64 * 1024  # decode/encode on the event loop below this; larger work goes to threads

Resize = Annotated[bool, Query(description="resize other sizes to the model's (fixed-size models)")]
Seed = Annotated[int | None, Query(ge=0, le=2**63 - 1, description="seed of the random draws")]


async def _decode_all(
    datas: list[bytes], served: ServedModel, resize: bool, settings: Settings, keep_color: bool
) -> list[Prepared]:
    def work() -> list[Prepared]:
        return [decode_image(d, served, resize, settings.max_pixels, keep_color) for d in datas]

    if sum(len(d) for d in datas) <= INLINE_BYTES:
        return work()
    return await run_in_threadpool(work)


def photo_timeout(base_s: float, rows: torch.Tensor) -> float:
    """The time budget of one photo: ``base_s`` per megapixel-plane of model work, at least ``base_s``.

    A colour image costs the network five plane passes (Y, U, V and the two negated chroma planes),
    a gray one one pass; on this project's 2-core CPU a gray megapixel took 12.6 s, so a fixed
    budget would turn every large photo into a 503 while a small one could hang as long.
    """
    _, c, h, w = rows.shape
    planes = 5 if c == 3 else 1
    return base_s * max(1.0, h * w * planes / 1e6)


def _one_row_batch(preps: list[Prepared]) -> torch.Tensor:
    return preps[0].rows if len(preps) == 1 else torch.cat([p.rows for p in preps])


RESIZE_DOC = ("resize", "boolean", "fixed-size models: resize other sizes (answer in the original)")


@raw_post(
    router,
    "/denoise",
    response_model=None,
    openapi_extra=query.openapi(
        RESIZE_DOC, ("sigma", "number", "photo models: noise σ on the 0-255 scale")
    ),
)
async def denoise(request: Request) -> Response | dict[str, Any]:
    """Clean image(s): one image -> image/png; several, or Accept: application/json -> JSON."""
    served = model_for(request, "denoise")
    settings = settings_of(request)
    resize = query.flag(request, "resize")
    sigma = query.number(request, "sigma", 0.0, 255.0)
    datas = await read_images(request, settings)
    preps = await _decode_all(datas, served, resize, settings, keep_color=True)
    sigmas: list[float | None] = [None] * len(preps)
    timeout = settings.request_timeout_s
    if served.kind == "photo":  # one row per image: gray, or RGB that the model handles itself
        outs = []
        for i, prep in enumerate(preps):
            y, sigmas[i] = await served.batcher.run_alone(
                served.ops.photo_denoise, PhotoRequest(prep.rows, sigma),
                photo_timeout(timeout, prep.rows),
            )
            outs.append(y)
    else:
        if sigma is not None:
            raise ApiError(422, "invalid_request", "sigma applies to photo models only")
        rows = _one_row_batch(preps)
        key = ("denoise", *rows.shape[1:])
        out = await served.batcher.run(served.ops.denoise, rows, key, timeout)
        assert isinstance(out, torch.Tensor)
        outs = [out] if len(preps) == 1 else list(out.split([p.rows.shape[0] for p in preps]))
    level = settings.png_compress_level

    def encode_all() -> list[bytes]:
        return [encode_image(p, o, level) for p, o in zip(preps, outs, strict=True)]

    pngs = (
        encode_all()
        if len(datas) == 1 and len(datas[0]) <= INLINE_BYTES
        else (await run_in_threadpool(encode_all))
    )
    if len(pngs) == 1 and not wants(request, "application/json"):
        headers = {} if sigmas[0] is None else {"X-Noise-Sigma": f"{sigmas[0]:.3f}"}
        return Response(pngs[0], media_type="image/png", headers=headers)
    images = []
    for prep, png, est in zip(preps, pngs, sigmas, strict=True):
        item: dict[str, Any] = {
            "png": codec.b64(png),
            "width": prep.size[0],
            "height": prep.size[1],
            "mode": prep.mode,
        }
        if est is not None:
            item["noise_sigma"] = round(est, 3)
        images.append(item)
    return {"model": served.name, "images": images}


@raw_post(
    router,
    "/encode",
    openapi_extra=query.openapi(
        RESIZE_DOC,
        ("sample", "boolean", "VAE: add a reparameterized draw z"),
        ("seed", "integer", "seed of that draw"),
    ),
)
async def encode(request: Request) -> dict[str, Any]:
    """Latent code(s): ``z`` for an autoencoder; ``mu``, ``sigma``, ``logvar`` for a VAE."""
    served = model_for(request, "encode")
    settings = settings_of(request)
    resize = query.flag(request, "resize")
    sample = query.flag(request, "sample")
    seed = query.integer(request, "seed", 0, 2**63 - 1)
    if sample and served.kind != "vae":
        raise ApiError(
            422, "invalid_request", f"sample=true needs a VAE; {served.name} is a {served.kind}"
        )
    datas = await read_images(request, settings)
    preps = await _decode_all(datas, served, resize, settings, keep_color=False)
    rows = _one_row_batch(preps)
    out = await served.batcher.run(
        served.ops.encode, rows, ("encode", *rows.shape[1:]), settings.request_timeout_s
    )
    assert isinstance(out, tuple)
    body: dict[str, Any] = {"model": served.name, "kind": served.kind}
    if served.kind != "vae":
        body["results"] = [{"z": z} for z in out[0].tolist()]
        return body
    mu, logvar = out
    std = torch.exp(0.5 * logvar)
    results: list[dict[str, Any]] = [
        {"mu": m, "sigma": s, "logvar": lv}
        for m, s, lv in zip(mu.tolist(), std.tolist(), logvar.tolist(), strict=True)
    ]
    if sample:
        used = secrets.randbits(63) if seed is None else seed
        gen = torch.Generator().manual_seed(used)
        z = mu + std * torch.randn(mu.shape, generator=gen)
        for item, row in zip(results, z.tolist(), strict=True):
            item["z"] = row
        body["seed"] = used
    body["results"] = results
    return body


@router.post("/score")
async def score(
    request: Request,
    served: Annotated[ServedModel, Depends(supporting("score"))],
    resize: Resize = False,
    k: Annotated[int | None, Query(ge=1, description="importance samples (default 100)")] = None,
    seed: Seed = None,
) -> dict[str, Any]:
    """Anomaly score per image: negative ELBO and the IWAE estimate of -log p(x), in nats."""
    settings = settings_of(request)
    k = settings.default_k if k is None else k
    if k > settings.max_k:
        raise ApiError(
            422, "limit_exceeded", f"k={k} is over the limit of {settings.max_k} (AESERVE_MAX_K)"
        )
    datas = await read_images(request, settings)
    preps = await _decode_all(datas, served, resize, settings, keep_color=False)
    used = secrets.randbits(63) if seed is None else seed
    req = ScoreRequest(_one_row_batch(preps), k, used)
    nll, neg_elbo = await served.batcher.run_alone(
        served.ops.score, req, settings.request_timeout_s
    )
    return {
        "model": served.name,
        "k": k,
        "seed": used,
        "unit": "nats",
        "input": "pixel intensities in [0, 1] (not binarized)",
        "results": [
            {"nll": a, "neg_elbo": b} for a, b in zip(nll.tolist(), neg_elbo.tolist(), strict=True)
        ],
    }
