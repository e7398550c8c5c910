"""Operations on the service itself: reload the checkpoints without downtime."""

from __future__ import annotations

import os
import signal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.deps import RegistryDep
from app.errors import ApiError, responses
from app.registry import StartupError

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class ReloadAnswer(BaseModel):
    loaded: list[str] = Field(description="new or changed models, verified, warmed and swapped in")
    unchanged: list[str]
    refused: dict[str, str] = Field(description="models whose new checkpoint failed verification "
                                                "(the old one keeps serving), with the reason")
    retired: list[str] = Field(description="models whose folder is gone; retired once idle")
    workers: int = Field(description="with several workers, each is replaced in turn (a rolling "
                                     "restart); this answer covers the worker that answered")


@router.post("/reload", response_model=ReloadAnswer, responses=responses(409, 503))
async def reload(registry: RegistryDep) -> ReloadAnswer:
    """Pick up model folders replaced, added or removed under AESERVE_CHECKPOINT_DIR (as SIGHUP).

    409 ``reload_refused`` when that folder is gone or holds no model: nothing changes."""
    try:
        report = await registry.reload()
    except StartupError as exc:
        raise ApiError(409, "reload_refused",
                       f"{exc}; nothing was reloaded and the loaded models serve on") from exc
    workers = registry.settings.workers
    if workers > 1:  # the server's supervisor replaces every worker, each loading what is on disk
        os.kill(os.getppid(), signal.SIGHUP)
    return ReloadAnswer(loaded=report.loaded, unchanged=report.unchanged, refused=report.refused,
                        retired=report.retired, workers=workers)
