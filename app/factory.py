"""The import string uvicorn's workers use: ``app.factory:build`` reads settings from the env."""

from __future__ import annotations

from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings


def build() -> FastAPI:
    return create_app(Settings())
