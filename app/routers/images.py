"""Image-in operations: denoise, encode, score. The model's kind does the work; this file speaks HTTP."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, Field, field_validator, model_validator

from app import images
from app.deps import JSON_ONLY, ModelFor
from app.errors import limit_exceeded, png_answer, responses
from app.kinds import ServedModel
from app.kinds.base import DenoiseParams, EncodeParams
from app.kinds.schemas import LatentResult
from app.negotiation import JSON, PNG, negotiate
from app.routers import SERVER_ERROR, operation_id, request_body
from app.routers.query import STRICT_QUERY, QueryModel
from app.uploads import read_images

router = APIRouter(prefix="/v1/models/{name}", tags=["images"], dependencies=STRICT_QUERY,
                   responses=SERVER_ERROR, generate_unique_id_function=operation_id)

IMAGE_ERRORS = responses(400, 404, 408, 413, 415, 422, 503)


class ImageUpload(BaseModel):
    """Images as a multipart/form-data upload (one image may also come as the raw body, with
    Content-Type ``image/*``). The form's schema, for the OpenAPI document: ``read_images`` reads
    the form itself."""

    image: list[bytes] = Field(description="one or more images (repeat the field)")


# the bodies these routes read themselves, documented as components (``request_body``)
BODIES = (ImageUpload,)
UPLOAD_BODY = request_body({"multipart/form-data": ImageUpload,
                            "image/*": {"type": "string", "format": "binary"}})


class DenoiseQuery(QueryModel):
    resize: bool = Field(default=False, description="fixed-size models: resize other sizes "
                                                    "(the answer comes back in the original size); "
                                                    "a model of any size ignores it (`any_size` on "
                                                    "its card)")
    sigma: float | None = Field(default=None, ge=0, le=255, allow_inf_nan=False,
                                description="photo models: the noise σ on the 0-255 scale")

    @field_validator("sigma")
    @classmethod
    def no_negative_zero(cls, sigma: float | None) -> float | None:
        """``sigma=-0`` passes ``ge=0``; kept as it came, it was answered ``X-Noise-Sigma: -0.000``."""
        return None if sigma is None else abs(sigma)


class EncodeQuery(QueryModel):
    resize: bool = Field(default=False, description="fixed-size models: resize other sizes")
    sample: bool = Field(default=False, description="VAE: add a reparameterized draw z")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1,
                             description="seed of that draw (with sample=true only); an image's "
                             "z depends on the seed and its pixels alone")

    @model_validator(mode="after")
    def seed_needs_a_draw(self) -> EncodeQuery:
        """A seed without ``sample=true`` seeds nothing: 422, not an answer that looks seeded."""
        if self.seed is not None and not self.sample:
            raise ValueError("seed applies to the draw that sample=true adds; send sample=true "
                             "with it, or leave seed out (μ and σ need no seed)")
        return self


class ScoreQuery(QueryModel):
    resize: bool = Field(default=False, description="fixed-size models: resize other sizes")
    k: int | None = Field(default=None, ge=1, description="importance samples (default 100)")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1,
                             description="seed of the importance samples; an image's scores "
                             "depend on the seed and its pixels alone")


class DenoisedJson(BaseModel):
    png: str = Field(description="the clean image, base64 PNG, in the original size and mode")
    width: int
    height: int
    mode: str
    noise_sigma: float | None = Field(
        default=None, description="photo models: the σ used (0-255); null for other models, and "
                                  "for an image too small to estimate it from")


class DenoiseAnswer(BaseModel):
    model: str
    images: list[DenoisedJson]


class EncodeAnswer(BaseModel):
    model: str
    kind: str
    seed: int | None = None
    results: list[LatentResult]


class ScoreResult(BaseModel):
    nll: float
    neg_elbo: float


class ScoreAnswer(BaseModel):
    model: str
    k: int
    seed: int
    unit: str
    input: str
    results: list[ScoreResult]


@router.post(
    "/denoise",
    response_model=DenoiseAnswer,
    responses={**png_answer("One image: image/png, or JSON when Accept prefers application/json; "
                            "several images: JSON only",
                            **{"X-Noise-Sigma": "photo models, PNG answers: the noise σ used "
                                                "(0-255), the one given or the estimate"}),
               **IMAGE_ERRORS, **responses(406)},
    openapi_extra=UPLOAD_BODY,
)
async def denoise(
    served: Annotated[ServedModel, Depends(ModelFor("denoise"))],
    query: Annotated[DenoiseQuery, Query()],
    request: Request,
    accept: Annotated[list[str] | None, Header(description=(
        "one image: image/png (the default, also for */* and a missing Accept) or application/json; "
        "several images: application/json only. q-values count; 406 when none is acceptable"))] = None,
) -> DenoiseAnswer | Response:
    """Clean image(s). One image: image/png, or JSON when Accept prefers application/json. Several
    images: JSON only (406 ``not_acceptable`` when Accept refuses JSON)."""
    with served.ticket(request) as ticket:
        uploads = await read_images(request, served.settings)
        one = len(uploads) == 1
        media = negotiate(accept, (PNG, JSON) if one else (JSON,),
                          why="" if one else "several images are answered as JSON only")
        answers = await served.denoise(uploads, DenoiseParams(query.resize, query.sigma), ticket)
    if media == PNG:
        (answer,) = answers
        headers = {} if answer.noise_sigma is None else {"X-Noise-Sigma": f"{answer.noise_sigma:.3f}"}
        return Response(answer.png, media_type=PNG, headers=headers)
    return DenoiseAnswer(model=served.name, images=[
        DenoisedJson(png=images.b64(a.png), width=a.width, height=a.height, mode=a.mode,
                     noise_sigma=None if a.noise_sigma is None else round(a.noise_sigma, 3))
        for a in answers
    ])


@router.post("/encode", response_model=EncodeAnswer, response_model_exclude_none=True,
             responses={**IMAGE_ERRORS, **responses(406)}, openapi_extra=UPLOAD_BODY,
             dependencies=JSON_ONLY)
async def encode(
    served: Annotated[ServedModel, Depends(ModelFor("encode"))],
    query: Annotated[EncodeQuery, Query()],
    request: Request,
) -> EncodeAnswer:
    """Latent code(s): ``z`` for an autoencoder; ``mu``, ``sigma``, ``logvar`` for a VAE."""
    with served.ticket(request) as ticket:
        uploads = await read_images(request, served.settings)
        answer = await served.encode(
            uploads, EncodeParams(query.resize, query.sample, query.seed), ticket
        )
    return EncodeAnswer(model=served.name, kind=served.kind, seed=answer.seed,
                        results=answer.results)


@router.post("/score", response_model=ScoreAnswer, responses={**IMAGE_ERRORS, **responses(406)},
             openapi_extra=UPLOAD_BODY, dependencies=JSON_ONLY)
async def score(
    served: Annotated[ServedModel, Depends(ModelFor("score"))],
    query: Annotated[ScoreQuery, Query()],
    request: Request,
) -> ScoreAnswer:
    """Anomaly score per image: negative ELBO and the IWAE estimate of -log p(x), in nats."""
    settings = served.settings
    k = settings.default_k if query.k is None else query.k
    if k > settings.max_k:
        raise limit_exceeded(f"k={k}", settings.max_k, "MAX_K")
    used = secrets.randbits(63) if query.seed is None else query.seed
    with served.ticket(request) as ticket:
        uploads = await read_images(request, settings)
        nll, neg_elbo = await served.score(uploads, query.resize, k, used, ticket)
    return ScoreAnswer(
        model=served.name, k=k, seed=used, unit="nats",
        input="pixel intensities in [0, 1] (not binarized)",
        results=[ScoreResult(nll=a, neg_elbo=b) for a, b in zip(nll, neg_elbo, strict=True)],
    )
