"""What a kind hands the routers: its card and its latent codes, as typed models that the OpenAPI
schema documents field by field. A kind that adds fields to its card subclasses ``ModelCard``
(the photo denoiser's ``PhotoCard``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field


class ImageSize(BaseModel):
    height: int
    width: int


class ModelCard(BaseModel):
    """How to call the model, and where it came from (the checkpoint's config.json)."""

    name: str
    kind: str
    input_shape: list[int] = Field(description="channels, height, width of the training images")
    channels: int
    size: ImageSize | None = Field(
        description="the size a fixed-size model takes (other sizes need resize=true); null for "
                    "a model of any size")
    any_size: bool
    takes_sigma: bool = Field(description="denoise takes the input's noise level (sigma)")
    latent_dim: int | None
    operations: list[str]
    device: str
    runtime: str = Field(description="torch or onnxruntime")
    sha256: str = Field(description="the weights' SHA-256, as the checkpoint records it")
    loaded_at: str = Field(description="UTC, ISO 8601")
    ready: bool = Field(description="warmed up: the first request pays no setup cost")
    value_range: list[float] = Field(description="[low, high] of the pixel values the network "
                                                 "was trained on")
    likelihood: str | None = Field(description="the reconstruction loss it was trained with")
    load_seconds: float
    torch_version: str | None = Field(description="the torch version that trained it")
    recipe: dict[str, dict[str, Any] | None] = Field(
        description="the training recipe: its `model`, `noise` and `train` sections")
    dataset: dict[str, Any] | None = Field(description="what it was trained on")
    training: dict[str, Any] = Field(description="how it was trained (command, steps, best "
                                                 "validation figures), without the history")
    evaluation: dict[str, Any] | None = Field(description="the figures `model.evaluate` recorded")


class PhotoCard(ModelCard):
    """A photo denoiser's card: a model card, with the noise levels it takes."""

    sigma_cap: float = Field(description="the highest σ (0-255) the network is told: the top of "
                                         "its training range; a larger one given is capped")
    colour_sha256: str | None = Field(
        description="the SHA-256 of the colour network paired with it; null for a checkpoint "
                    "without one")


class LatentResult(BaseModel):
    z: list[float] | None = Field(default=None, description="DAE: the code; VAE: a draw (sample=true)")
    mu: list[float] | None = None
    sigma: list[float] | None = None
    logvar: list[float] | None = None


@dataclass(frozen=True, slots=True)
class Encoded:
    """An encode's answer: one result per image, and the seed of the draw when it made one."""

    results: list[LatentResult]
    seed: int | None = None
