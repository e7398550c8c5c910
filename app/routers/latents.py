"""Latent-in operations: decode, sample, interpolate. Answers JSON base64 PNGs or one PNG grid."""

from __future__ import annotations

import json
import math
import secrets
from typing import Annotated, Any

import torch
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, ValidationError

from app import codec
from app.deps import SettingsDep, supporting
from app.errors import ApiError
from app.inference import SampleRequest
from app.inputs import media_type, read_images, wants
from app.pipeline import decode_image, latent_images
from app.registry import ServedModel
from app.settings import Settings

router = APIRouter(prefix="/v1/models/{name}", tags=["latents"])


class DecodeBody(BaseModel):
    z: list[list[float]] = Field(description="latent vectors, each of the model's latent size")


class SampleBody(BaseModel):
    n: int = Field(default=16, ge=1, description="how many samples")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1, description="same seed, same bytes")
    temperature: float = Field(default=1.0, gt=0, le=10, description="scale of the prior's std")


class InterpolateBody(BaseModel):
    z: list[list[float]] = Field(description="exactly two latent vectors: start and end")
    steps: int = Field(default=8, ge=2)


def check_latents(z: list[list[float]], served: ServedModel, max_rows: int) -> torch.Tensor:
    """422 unless there are 1..max_rows vectors of the latent size, all finite."""
    dim = served.latent_dim
    if not z:
        raise ApiError(422, "invalid_latent", "z is empty: send at least one latent vector")
    if len(z) > max_rows:
        raise ApiError(
            422,
            "limit_exceeded",
            f"{len(z)} latent vectors; the limit is {max_rows} (AESERVE_MAX_N)",
        )
    for i, row in enumerate(z):
        if len(row) != dim:
            raise ApiError(
                422,
                "invalid_latent",
                f"z[{i}] has {len(row)} values; model {served.name} has latent size {dim}",
            )
        for j, v in enumerate(row):
            if not math.isfinite(v):
                raise ApiError(422, "invalid_latent", f"z[{i}][{j}] is {v}: values must be finite")
    return torch.tensor(z, dtype=torch.float32)


async def decode_rows(served: ServedModel, z: torch.Tensor, settings: Settings) -> torch.Tensor:
    out = await served.batcher.run(
        served.ops.decode, z, ("decode", z.shape[1]), settings.request_timeout_s
    )
    assert isinstance(out, torch.Tensor)
    return out


def image_answer(
    request: Request, served: ServedModel, out: torch.Tensor, level: int, extra: dict[str, Any]
) -> Response | dict[str, Any]:
    images = latent_images(out)
    if wants(request, "image/png"):
        headers = {f"X-{k.capitalize()}": str(v) for k, v in extra.items()}
        return Response(
            codec.encode_png(codec.grid(images), level), media_type="image/png", headers=headers
        )
    return {
        "model": served.name,
        **extra,
        "images": [codec.b64(codec.encode_png(i, level)) for i in images],
    }


@router.post("/decode", response_model=None)
async def decode(
    request: Request,
    body: DecodeBody,
    served: Annotated[ServedModel, Depends(supporting("decode"))],
    settings: SettingsDep,
) -> Response | dict[str, Any]:
    """Latents -> images: JSON base64 PNGs, or one PNG grid with ``Accept: image/png``."""
    z = check_latents(body.z, served, settings.max_n)
    out = await decode_rows(served, z, settings)
    return image_answer(request, served, out, settings.png_compress_level, {})


@router.post("/sample", response_model=None)
async def sample(
    request: Request,
    served: Annotated[ServedModel, Depends(supporting("sample"))],
    settings: SettingsDep,
    body: SampleBody | None = None,
) -> Response | dict[str, Any]:
    """Draws from the prior, decoded; the seed (given or drawn) comes back in the answer."""
    body = body or SampleBody()
    if body.n > settings.max_n:
        raise ApiError(
            422,
            "limit_exceeded",
            f"n={body.n} is over the limit of {settings.max_n} (AESERVE_MAX_N)",
        )
    seed = secrets.randbits(63) if body.seed is None else body.seed
    req = SampleRequest(body.n, seed, body.temperature)
    out = await served.batcher.run_alone(served.ops.sample, req, settings.request_timeout_s)
    return image_answer(request, served, out, settings.png_compress_level, {"seed": seed})


@router.post("/interpolate", response_model=None)
async def interpolate(
    request: Request,
    served: Annotated[ServedModel, Depends(supporting("interpolate"))],
    settings: SettingsDep,
    steps: Annotated[
        int | None, Query(ge=2, description="points on the path, ends included")
    ] = None,
    resize: Annotated[bool, Query()] = False,
) -> Response | dict[str, Any]:
    """Two images (multipart) or ``{"z": [z0, z1], "steps": n}`` -> the decoded straight path."""
    if media_type(request) == "application/json":
        try:
            body = InterpolateBody.model_validate(json.loads(await request.body()))
        except (ValueError, ValidationError) as exc:
            raise ApiError(422, "invalid_request", f"invalid JSON body: {exc}") from exc
        ends = check_latents(body.z, served, 2)
        n_steps = steps or body.steps
    else:
        datas = await read_images(request, settings)
        if len(datas) != 2:
            raise ApiError(
                422, "invalid_request", f"interpolate needs exactly two images; got {len(datas)}"
            )
        preps = [
            decode_image(d, served, resize, settings.max_pixels, keep_color=False) for d in datas
        ]
        x = torch.cat([p.rows for p in preps])
        out = await served.batcher.run(
            served.ops.latent, x, ("latent", *x.shape[1:]), settings.request_timeout_s
        )
        assert isinstance(out, torch.Tensor)
        ends = out
        n_steps = steps or 8
    if ends.shape[0] != 2:
        raise ApiError(
            422, "invalid_request", f"interpolate needs exactly two ends; got {ends.shape[0]}"
        )
    if n_steps > settings.max_steps:
        raise ApiError(
            422, "limit_exceeded", f"steps={n_steps} is over the limit of {settings.max_steps}"
        )
    t = torch.linspace(0.0, 1.0, n_steps)[:, None]
    path = (1 - t) * ends[0] + t * ends[1]
    out = await decode_rows(served, path, settings)
    return image_answer(request, served, out, settings.png_compress_level, {"steps": n_steps})
