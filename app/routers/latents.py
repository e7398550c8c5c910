"""Latent-in operations: decode, sample, interpolate. Answers JSON base64 PNGs or one PNG grid."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat

from app import images
from app.admission import Ticket
from app.deps import ModelFor, SettingsDep, is_json, read_json
from app.errors import ApiError, ErrorBody, limit_exceeded, png_answer, responses
from app.kinds import ServedModel
from app.kinds.inline import inline_or_thread
from app.negotiation import JSON, PNG, negotiate
from app.routers import SERVER_ERROR, operation_id, request_body
from app.routers.query import STRICT_QUERY, QueryModel
from app.settings import Settings
from app.uploads import media_type, read_images

router = APIRouter(prefix="/v1/models/{name}", tags=["latents"], dependencies=STRICT_QUERY,
                   responses=SERVER_ERROR, generate_unique_id_function=operation_id)

FLOAT32_MAX = float(np.finfo(np.float32).max)
LATENT_ERRORS: dict[int | str, dict[str, Any]] = {
    **responses(400, 404, 406, 408, 413, 422, 503),
    415: {"model": ErrorBody, "description": "The body is not application/json"},
}
PNG_OR_JSON = "JSON base64 PNGs (the default), or one PNG grid when Accept prefers image/png"


async def grid_or_json(
    accept: Annotated[list[str] | None, Header(description=(
        "application/json (the default, also for */* and a missing Accept) or image/png for one "
        "PNG grid; q-values count, and 406 when neither is acceptable"))] = None,
) -> str:
    """The answer's media type, before any work: JSON unless the client prefers PNG."""
    return negotiate(accept, (JSON, PNG))


Answer = Annotated[str, Depends(grid_or_json)]


class Body(BaseModel):
    """A JSON body: a field the operation does not take is a mistake (a misspelt ``temperature``
    would otherwise leave the default in force), 422 naming it."""

    model_config = ConfigDict(extra="forbid")


# JSON numbers only: a latent or a temperature sent as "1.5" or true is a mistake, not a number
class DecodeBody(Body):
    z: list[list[StrictFloat]] = Field(description="latent vectors, each of the model's latent size")


class SampleBody(Body):
    n: int = Field(default=16, ge=1, strict=True, description="how many samples")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1, strict=True,
                             description="same seed, same bytes")
    temperature: float = Field(default=1.0, gt=0, le=10, allow_inf_nan=False, strict=True,
                               description="scale of the prior's std")


class InterpolateBody(Body):
    z: list[list[StrictFloat]] = Field(description="exactly two latent vectors: start and end")
    steps: int = Field(default=8, ge=2, strict=True)


class InterpolateUpload(BaseModel):
    """The two ends of an interpolation as images: a multipart/form-data upload. The form's
    schema, for the OpenAPI document: ``read_images`` reads the form itself."""

    image: list[bytes] = Field(min_length=2, max_length=2,
                               description="two images: the start and the end (the field twice)")


# the bodies these routes read themselves, documented as components (``request_body``)
BODIES = (DecodeBody, SampleBody, InterpolateBody, InterpolateUpload)


class InterpolateQuery(QueryModel):
    steps: int | None = Field(default=None, ge=2, description="points on the path, ends included")
    resize: bool = Field(default=False, description="resize the two images to the model's size")


class ImagesAnswer(BaseModel):
    model: str
    seed: int | None = None
    steps: int | None = None
    images: list[str] = Field(description="base64 PNGs")


def check_latents(z: list[list[float]], served: ServedModel, max_rows: int) -> torch.Tensor:
    """422 unless there are 1..max_rows vectors of the latent size, all finite in float32."""
    dim = served.latent_dim
    if not z:
        raise ApiError(422, "invalid_latent", "z is empty: send at least one latent vector")
    if len(z) > max_rows:
        raise limit_exceeded(f"{len(z)} latent vectors", max_rows, "MAX_N")
    for i, row in enumerate(z):
        if len(row) != dim:
            raise ApiError(422, "invalid_latent",
                           f"z[{i}] has {len(row)} values; model {served.name} has latent size {dim}")
    values = np.asarray(z, dtype=np.float64)
    bad = ~(np.abs(values) <= FLOAT32_MAX)  # NaN, infinities and float32 overflow
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise ApiError(422, "invalid_latent",
                       f"z[{i}][{j}] is {z[i][j]}: values must be finite in float32 "
                       f"(|z| <= {FLOAT32_MAX:.4g})")
    return torch.from_numpy(values.astype(np.float32))


async def image_answer(served: ServedModel, out: torch.Tensor, media: str,
                       **extra: int) -> ImagesAnswer | Response:
    """The images (N, C, H, W) as ``media``: one PNG grid, or JSON base64 PNGs; encoded on the
    event loop or in the threadpool by their pixels (``app.kinds.inline``)."""
    level = served.settings.png_compress_level

    def encode() -> ImagesAnswer | Response:
        decoded = [images.from_planes(row) for row in out.numpy()]
        if media == PNG:
            headers = {f"X-{k.capitalize()}": str(v) for k, v in extra.items()}
            return Response(images.encode_png(images.grid(decoded), level),
                            media_type=PNG, headers=headers)
        return ImagesAnswer(model=served.name, **extra,
                            images=[images.b64(images.encode_png(i, level)) for i in decoded])

    return await inline_or_thread("encode", out.shape[0] * out.shape[-2] * out.shape[-1], encode)


@router.post("/decode", response_model=ImagesAnswer, response_model_exclude_none=True,
             responses={**png_answer(PNG_OR_JSON), **LATENT_ERRORS},
             openapi_extra=request_body({"application/json": DecodeBody}))
async def decode(
    served: Annotated[ServedModel, Depends(ModelFor("decode"))],
    media: Answer,
    settings: SettingsDep,
    request: Request,
) -> ImagesAnswer | Response:
    """Latents -> images: JSON base64 PNGs, or one PNG grid when Accept prefers ``image/png``
    (406 ``not_acceptable`` when it accepts neither)."""
    with served.ticket(request) as ticket:  # before the body: a reload waits for this request
        body = await read_json(request, settings, DecodeBody)
        z = check_latents(body.z, served, settings.max_n)
        return await image_answer(served, await served.decode(z, ticket), media)


@router.post("/sample", response_model=ImagesAnswer, response_model_exclude_none=True,
             responses={**png_answer(PNG_OR_JSON, **{"X-Seed": "PNG answers: the seed used, the "
                                                              "one given or the one drawn"}),
                        **LATENT_ERRORS},
             openapi_extra=request_body({"application/json": SampleBody}, required=False))
async def sample(
    served: Annotated[ServedModel, Depends(ModelFor("sample"))],
    media: Answer,
    settings: SettingsDep,
    request: Request,
) -> ImagesAnswer | Response:
    """Draws from the prior, decoded; the seed (given or drawn) comes back in the answer. JSON,
    or one PNG grid (seed in ``X-Seed``) when Accept prefers ``image/png``."""
    with served.ticket(request) as ticket:  # before the body: a reload waits for this request
        body = await read_json(request, settings, SampleBody, default=SampleBody)
        if body.n > settings.max_n:
            raise limit_exceeded(f"n={body.n}", settings.max_n, "MAX_N")
        seed = secrets.randbits(63) if body.seed is None else body.seed
        out = await served.sample(body.n, seed, body.temperature, ticket)
        return await image_answer(served, out, media, seed=seed)


@router.post(
    "/interpolate",
    response_model=ImagesAnswer,
    response_model_exclude_none=True,
    responses={**png_answer(PNG_OR_JSON, **{"X-Steps": "PNG answers: the points on the path"}),
               **responses(400, 404, 406, 408, 413, 422, 503),
               415: {"model": ErrorBody, "description": "Neither JSON latents nor an image upload, "
                                                        "or not an image this service decodes"}},
    openapi_extra=request_body({"application/json": InterpolateBody,
                                "multipart/form-data": InterpolateUpload}),
)
async def interpolate(
    served: Annotated[ServedModel, Depends(ModelFor("interpolate"))],
    media: Answer,
    settings: SettingsDep,
    query: Annotated[InterpolateQuery, Query()],
    request: Request,
) -> ImagesAnswer | Response:
    """Two images (multipart) or ``{"z": [z0, z1], "steps": n}`` -> the decoded straight path,
    answered as ``decode`` answers."""
    with served.ticket(request) as ticket:
        return await _interpolate(request, served, settings, ticket, query.steps, query.resize,
                                  media)


def check_steps(steps: int, settings: Settings) -> None:
    if steps > settings.max_steps:
        raise limit_exceeded(f"steps={steps}", settings.max_steps, "MAX_STEPS")


async def _interpolate(request: Request, served: ServedModel, settings: Settings, ticket: Ticket,
                       steps: int | None, resize: bool, media: str) -> ImagesAnswer | Response:
    if steps is not None:  # refused before the body is read and the images encoded
        check_steps(steps, settings)
    sent = media_type(request)
    if is_json(sent):
        if resize:
            raise ApiError(422, "invalid_request", "resize applies to two image uploads; latents "
                           "have no size: leave resize out of a JSON interpolate")
        body = await read_json(request, settings, InterpolateBody)
        if len(body.z) != 2:
            raise ApiError(422, "invalid_request",
                           f"interpolate needs exactly two ends; got {len(body.z)}")
        ends = check_latents(body.z, served, 2)
        if steps is not None and "steps" in body.model_fields_set and steps != body.steps:
            raise ApiError(422, "invalid_request", f"steps is {steps} in the query and "
                           f"{body.steps} in the body: give it once")
        n_steps = steps or body.steps
    elif sent == "multipart/form-data" or sent.startswith("image/"):
        datas = await read_images(request, settings)
        if len(datas) != 2:
            raise ApiError(422, "invalid_request",
                           f"interpolate needs exactly two images; got {len(datas)}")
        ends = await served.interpolate_ends(datas, resize, ticket)
        n_steps = steps or 8
    else:
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type {sent or '(none)'} is neither JSON nor an image upload: send "
                       '{"z": [z0, z1]} with Content-Type: application/json, or two images as '
                       "multipart/form-data fields 'image'")
    check_steps(n_steps, settings)
    return await image_answer(served, await served.interpolate(ends, n_steps, ticket), media,
                              steps=n_steps)
