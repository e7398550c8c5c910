"""The model kinds the service knows, by the ``kind`` their checkpoint's config.json names."""

from __future__ import annotations

from app.kinds.autoencoder import Autoencoder, VariationalAutoencoder
from app.kinds.base import ServedModel
from app.kinds.photo import PhotoDenoiser

KINDS: dict[str, type[ServedModel]] = {
    cls.kind: cls for cls in (Autoencoder, VariationalAutoencoder, PhotoDenoiser)
}

__all__ = ["KINDS", "ServedModel"]
