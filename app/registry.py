"""The served models: found in the checkpoint directory, loaded through ``model/``, warmed up.

``load_model`` verifies a checkpoint (hash, shapes; no pickle), picks the class of its kind from
``app.kinds.KINDS`` and builds its runtime. The registry keeps the models by name.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from app.errors import ApiError
from app.kinds import KINDS, ServedModel
from app.metrics import Metrics
from app.settings import Settings
from model.checkpoint import CONFIG_FILE, CheckpointError, load_checkpoint

log = logging.getLogger("aeserve")


class StartupError(Exception):
    """The service cannot start; ``str`` is the one line printed before exiting."""


def discover(checkpoint_dir: Path) -> list[Path]:
    """Every subfolder holding a ``config.json``, sorted by name."""
    if not checkpoint_dir.is_dir():
        raise StartupError(
            f"checkpoint directory {checkpoint_dir}: does not exist (AESERVE_CHECKPOINT_DIR)"
        )
    folders = sorted(
        p for p in checkpoint_dir.iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file()
    )
    if not folders:
        raise StartupError(
            f"checkpoint directory {checkpoint_dir}: holds no model folder with a {CONFIG_FILE}"
        )
    return folders


def preflight(settings: Settings) -> list[str]:
    """Load and verify every checkpoint on the CPU, raising ``CheckpointError``/``StartupError``."""
    try:
        settings.resolve_runtime(settings.resolve_device())
    except ValueError as exc:
        raise StartupError(str(exc)) from exc
    names = []
    for folder in discover(settings.checkpoint_dir):
        ckpt = load_checkpoint(folder, "cpu")
        if ckpt.meta.get("kind") not in KINDS:
            raise CheckpointError(folder, CONFIG_FILE, f"unknown model kind {ckpt.meta.get('kind')!r}")
        names.append(folder.name)
    return names


def load_model(folder: Path, settings: Settings, metrics: Metrics) -> ServedModel:
    """Load (hash verified, no pickle) onto the device and build the runtime; not yet warm."""
    start = time.perf_counter()
    device = settings.resolve_device()
    ckpt = load_checkpoint(folder, device)
    cls = KINDS.get(str(ckpt.meta.get("kind")))
    if cls is None:
        raise CheckpointError(folder, CONFIG_FILE, f"unknown model kind {ckpt.meta.get('kind')!r}")
    served = cls(ckpt, device, settings, metrics.for_model(ckpt.name))
    served.load_seconds = time.perf_counter() - start
    return served


class Registry:
    """The models being served, by name."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models: dict[str, ServedModel] = {}

    async def add(self, served: ServedModel) -> None:
        served.start()
        if self.settings.warmup:
            await served.warm_up()
        else:
            served.warm = True
        self.metrics.for_model(served.name).load_seconds.set(served.load_seconds)
        self.models[served.name] = served
        log.info("loaded %s (%s, %s, sha256 %s…) on %s in %.2f s", served.name, served.kind,
                 served.runtime.name, served.checkpoint.sha256[:12], served.device,
                 served.load_seconds)

    async def load_all(self) -> None:
        for folder in discover(self.settings.checkpoint_dir):
            await self.add(load_model(folder, self.settings, self.metrics))

    async def stop_all(self, error: ApiError) -> None:
        for served in self.models.values():
            await served.stop(error)
