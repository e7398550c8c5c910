"""Moved to ``model.photo.inference``; kept only while older callers still import it from here."""

from __future__ import annotations

from model.photo.inference import denoise_image

__all__ = ["denoise_image"]
