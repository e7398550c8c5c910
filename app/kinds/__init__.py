"""The model kinds the service knows, by the ``kind`` their checkpoint's config.json names."""

from __future__ import annotations

from app.kinds.autoencoder import Autoencoder, VariationalAutoencoder
from app.kinds.base import ServedModel
from app.kinds.photo import PhotoDenoiser
from app.kinds.schemas import ModelCard, PhotoCard

KINDS: dict[str, type[ServedModel]] = {
    cls.kind: cls for cls in (Autoencoder, VariationalAutoencoder, PhotoDenoiser)
}

# every card a kind answers, the most specific first: what GET /v1/models/{name} documents
AnyCard = PhotoCard | ModelCard

__all__ = ["KINDS", "AnyCard", "ModelCard", "ServedModel"]
