"""What is served: the model list and each model's card."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from app.deps import ModelDep, RegistryDep
from app.errors import responses

router = APIRouter(prefix="/v1/models", tags=["models"])


class ModelSummary(BaseModel):
    name: str
    kind: str
    input_shape: list[int]
    any_size: bool
    takes_sigma: bool
    latent_dim: int | None
    operations: list[str]
    url: str


class ModelList(BaseModel):
    models: list[ModelSummary]


class ModelCard(BaseModel):
    """How to call the model, and where it came from (the checkpoint's config.json)."""

    model_config = ConfigDict(extra="allow")

    name: str
    kind: str
    input_shape: list[int]
    channels: int
    size: dict[str, int] | None
    any_size: bool
    takes_sigma: bool
    latent_dim: int | None
    operations: list[str]
    device: str
    runtime: str
    sha256: str
    loaded_at: str
    ready: bool


@router.get("", response_model=ModelList)
async def list_models(registry: RegistryDep) -> ModelList:
    return ModelList(models=[
        ModelSummary(
            name=m.name,
            kind=m.kind,
            input_shape=m.meta["input_shape"],
            any_size=m.any_size,
            takes_sigma=m.takes_sigma,
            latent_dim=m.latent_dim,
            operations=list(m.operations),
            url=f"/v1/models/{m.name}",
        )
        for m in sorted(registry.models.values(), key=lambda m: m.name)
    ])


@router.get("/{name}", response_model=ModelCard, responses=responses(404, 422))
async def get_model(served: ModelDep) -> ModelCard:
    return ModelCard.model_validate(served.card())
