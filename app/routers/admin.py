"""Operations on the service itself: reload the checkpoints without downtime."""

from __future__ import annotations

import logging
import os
import signal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from app.auth import needs_a_token
from app.deps import JSON_ONLY, JSON_ONLY_ERRORS, RegistryDep
from app.errors import ApiError, responses
from app.registry import StartupError
from app.routers import SERVER_ERROR, operation_id
from app.server import supervisor_pid

router = APIRouter(prefix="/v1/admin", tags=["admin"], generate_unique_id_function=operation_id,
                   dependencies=[Depends(needs_a_token), *JSON_ONLY],
                   responses={**JSON_ONLY_ERRORS, **responses(403), **SERVER_ERROR})
log = logging.getLogger("aeserve")


class ReloadAnswer(BaseModel):
    loaded: list[str] = Field(description="new or changed models, verified, warmed and swapped in")
    unchanged: list[str]
    refused: dict[str, str] = Field(description="models whose new checkpoint failed verification "
                                                "(the old one keeps serving), with the reason")
    retired: list[str] = Field(description="models whose folder is gone; retired once idle")
    workers: int = Field(description="the workers this reload replaces: AESERVE_WORKERS under "
                                     "python -m app, each in turn (a rolling restart) after this "
                                     "answer, only when something is loaded or retired and "
                                     "nothing is refused (else 0): a worker cannot tell what the "
                                     "others have loaded; 1 for one process, reloaded in place")


@router.post("/reload", response_model=ReloadAnswer, responses=responses(409, 503))
async def reload(registry: RegistryDep) -> ReloadAnswer:
    """Pick up model folders replaced, added or removed under AESERVE_CHECKPOINT_DIR (as SIGHUP).

    One process reloads in place: what verifies is swapped in, what does not is refused and the
    old model serves on. The workers of ``python -m app`` (AESERVE_WORKERS > 1) reload all or
    nothing: every changed checkpoint is verified here first, without loading it; only if none is
    refused, and something is to load or retire, is each worker replaced in turn (uvicorn's
    supervisor, on SIGHUP), every one loading the same folders from disk. 409 ``reload_refused``
    when the folder is gone or holds no model: nothing changes."""
    supervisor = supervisor_pid()  # None: this process serves alone and reloads in place
    workers = 1 if supervisor is None else registry.settings.workers
    try:
        report = await (registry.reload() if supervisor is None else registry.check())
    except StartupError as exc:
        raise ApiError(409, "reload_refused",
                       f"{exc}; nothing was reloaded and the loaded models serve on") from exc
    if supervisor is None:
        log.info("reload: %s", report.summary())
    elif report.refused or not (report.loaded or report.retired):  # all or nothing; or nothing new
        workers = 0
        log.info("reload checked, nothing replaced: %s", report.summary())
    else:  # the supervisor replaces every worker in turn
        log.info("reload checked, replacing %d workers: %s", workers, report.summary())
        os.kill(supervisor, signal.SIGHUP)
    return ReloadAnswer(loaded=report.loaded, unchanged=report.unchanged, refused=report.refused,
                        retired=report.retired, workers=workers)
