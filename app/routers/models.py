"""What is served: the model list and each model's card."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter
from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

from app.deps import JSON_ONLY, JSON_ONLY_ERRORS, ModelDep, RegistryDep, SettingsDep
from app.errors import responses
from app.images import MAX_SIDE
from app.kinds import AnyCard, ModelCard
from app.routers import SERVER_ERROR, operation_id

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=JSON_ONLY,
                   responses={**JSON_ONLY_ERRORS, **SERVER_ERROR},
                   generate_unique_id_function=operation_id)


class ModelSummary(BaseModel):
    name: str
    kind: str
    input_shape: list[int]
    any_size: bool
    takes_sigma: bool
    latent_dim: int | None
    operations: list[str]
    url: str
    denoise_work_per_pixel: dict[str, float] | None = Field(
        description="pixel-equivalents of work per input pixel of a denoise, for a `gray` and a "
                    "`colour` image: an image about the limit's size (aspect ratios 1:1 to 16:9) "
                    "whose pixels times this are within `limits.max_work_pixels` is not refused "
                    "for its work (tiling makes the true figure vary a little with the size; this "
                    "is the largest there). null when the model does not denoise")


class Limits(BaseModel):
    """What this service refuses, so that a client can tell before it sends an image."""

    max_pixels: int = Field(description="largest image, width x height (413 too_many_pixels)")
    max_side: int = Field(description="longest side of an image, pixels (413 too_many_pixels)")
    max_upload_bytes: int = Field(
        description="largest image upload, the whole multipart body (413 payload_too_large)")
    max_images: int = Field(description="images in one request (422)")
    max_work_pixels: int = Field(
        description="work of one request (AESERVE_MAX_WORK x 10^6), in pixel-equivalents: pixels "
                    "decoded plus pixels the network processes (413 too_much_work); see each "
                    "model's denoise_work_per_pixel")


class ModelList(BaseModel):
    models: list[ModelSummary]
    limits: Limits


# a named schema (a component ``AnyModelCard``), where the bare union would be inlined under a
# title made from the route, which a generated client takes for a type name
AnyModelCard = TypeAliasType("AnyModelCard", AnyCard)


@router.get("", response_model=ModelList)
async def list_models(registry: RegistryDep, settings: SettingsDep) -> ModelList:
    """The models served, and the limits every request is held to."""
    limits = Limits(max_pixels=settings.max_pixels, max_side=MAX_SIDE,
                    max_upload_bytes=settings.max_body_bytes, max_images=settings.max_images,
                    max_work_pixels=settings.max_work_units)
    return ModelList(limits=limits, models=[
        ModelSummary(
            name=m.name,
            kind=m.kind,
            input_shape=m.meta["input_shape"],
            any_size=m.any_size,
            takes_sigma=m.takes_sigma,
            latent_dim=m.latent_dim,
            operations=list(m.operations),
            url=f"/v1/models/{quote(m.name, safe='')}",  # a folder name may hold '#', '?' or spaces
            denoise_work_per_pixel=m.work_per_pixel,
        )
        for m in sorted(registry.models.values(), key=lambda m: m.name)
    ])


@router.get("/{name}", response_model=AnyModelCard, responses=responses(404))
async def get_model(served: ModelDep) -> ModelCard:
    """The model's card: how to call it, and where it came from."""
    return served.card()
