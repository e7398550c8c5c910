"""The served models: found in the checkpoint directory, loaded through ``model/``, warmed up.

``load_model`` verifies a checkpoint (hash, shapes; no pickle), picks the class of its kind from
``app.kinds.KINDS`` and builds its runtime. The registry keeps the models by name and reloads them
without downtime (SIGHUP, ``POST /v1/admin/reload``): a changed or new folder is verified and
warmed while the old model keeps serving, then swapped in with one assignment between two
requests; requests already holding the old model finish on it, and it is stopped once its queue
is empty (or at shutdown, whichever comes first). A checkpoint that fails verification is refused
with one log line; the old one serves on. A model whose folder is gone is retired; one whose folder
is still there without its config.json is refused like a broken checkpoint. A folder is unchanged
when its config.json is the same and its files are too, by their stat (``folder_files``); files
replaced or rewritten under the same config.json are verified again, so that weights a restart
would refuse are refused now.
"""

from __future__ import annotations

import asyncio
import logging
import stat
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from app.drain import Drain, shutting_down
from app.errors import ApiError
from app.kinds import KINDS, ServedModel
from app.metrics import Metrics
from app.settings import Settings
from model.checkpoint import CONFIG_FILE, Checkpoint, CheckpointError, read_meta

log = logging.getLogger("aeserve")

FileStat = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode


class StartupError(Exception):
    """The service cannot start; ``str`` is the one line printed before exiting."""


def model_folders(checkpoint_dir: Path) -> list[Path]:
    """Every subfolder holding a ``config.json``, sorted by name; hidden ones (``.name``, a
    folder being staged or set aside during an update) are not models."""
    return sorted(
        p for p in checkpoint_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / CONFIG_FILE).is_file()
    )


def discover(checkpoint_dir: Path) -> list[Path]:
    """The model folders; ``StartupError`` when there are none or the folder cannot be read."""
    if not checkpoint_dir.is_dir():
        raise StartupError(
            f"checkpoint directory {checkpoint_dir}: does not exist (AESERVE_CHECKPOINT_DIR)"
        )
    try:
        folders = model_folders(checkpoint_dir)
    except OSError as exc:  # gone since, or not readable
        raise StartupError(f"checkpoint directory {checkpoint_dir}: cannot be read ({exc})") from exc
    if not folders:
        raise StartupError(
            f"checkpoint directory {checkpoint_dir}: holds no model folder with a {CONFIG_FILE}"
        )
    return folders


def folder_files(folder: Path) -> dict[str, FileStat]:
    """Every file under ``folder`` (the weights, config.json, a paired network's folder), by its
    path there, with its size, modification and change times and inode: a file written, copied
    over or renamed into place since differs, and telling so reads no file. ``CheckpointError``
    when the folder cannot be listed (it is being removed, say)."""
    files = {}
    try:
        for path in sorted(folder.rglob("*")):
            info = path.stat()
            if not stat.S_ISDIR(info.st_mode):
                files[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns,
                                                        info.st_ctime_ns, info.st_ino)
    except OSError as exc:  # a file gone between listing and stat, a folder not readable
        raise CheckpointError(folder, ".", f"cannot be listed ({exc})") from exc
    return files


def preflight(settings: Settings) -> list[str]:
    """Load and verify every checkpoint on the CPU, raising ``CheckpointError``/``StartupError``."""
    try:
        settings.resolve_runtime(settings.resolve_device())
    except ValueError as exc:
        raise StartupError(str(exc)) from exc
    names = []
    for folder in discover(settings.checkpoint_dir):
        verify(folder)
        names.append(folder.name)
    return names


def load_served(folder: Path, device: str) -> tuple[type[ServedModel], Checkpoint]:
    """The adapter of the kind ``folder``'s config.json names and the checkpoint loaded by it
    onto ``device``; ``CheckpointError`` if the kind is not served or the checkpoint is bad.
    config.json is read once: the kind and the network come from the same text."""
    meta = read_meta(folder)
    kind = meta.get("kind")
    cls = KINDS.get(str(kind))
    if cls is None:
        raise CheckpointError(folder, CONFIG_FILE, f"unknown model kind {kind!r}")
    return cls, cls.load(folder, device, meta)


def verify(folder: Path) -> None:
    """Load a checkpoint on the CPU (hash and shapes verified, no pickle) and check its kind is
    served; ``CheckpointError`` otherwise. Nothing is kept."""
    load_served(folder, "cpu")


def load_model(folder: Path, settings: Settings, metrics: Metrics) -> ServedModel:
    """Load (hash verified, no pickle) onto the device and build the runtime; not yet warm."""
    start = time.perf_counter()
    device = settings.resolve_device()
    cls, ckpt = load_served(folder, device)
    served = cls(ckpt, device, settings, metrics.for_model(ckpt.name))
    served.load_seconds = time.perf_counter() - start
    return served


@dataclass
class ReloadReport:
    loaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    retired: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One log line's worth: ``loaded ['mnist-dae'], unchanged ..., refused -, retired -``."""
        return (f"loaded {self.loaded or '-'}, unchanged {self.unchanged or '-'}, "
                f"refused {sorted(self.refused) or '-'}, retired {self.retired or '-'}")


class Registry:
    """The models being served, by name."""

    def __init__(self, settings: Settings, metrics: Metrics, drain: Drain,
                 on_dead: Callable[[str, bool], None] | None = None) -> None:
        """``on_dead(name, failure)``: what to do when a model's batch worker stops by a bug (else
        only ``/healthz`` says so); ``failure`` as ``_dead`` has it."""
        self.settings = settings
        self.on_dead = on_dead
        self.metrics = metrics
        self.drain = drain
        self.models: dict[str, ServedModel] = {}
        self.retiring: set[ServedModel] = set()  # replaced or removed, until stopped
        self.tasks: set[asyncio.Task[None]] = set()  # retirements and SIGHUP's reloads
        self._served: set[str] = set()  # every name that has served (its metrics have history)
        self._files: dict[str, dict[str, FileStat]] = {}  # what each model's folder held at load
        self._reload_lock = asyncio.Lock()  # one load at a time: startup, a reload, a check

    async def add(self, served: ServedModel) -> None:
        """Start and warm ``served``, then serve it under its name (replacing any model there)."""
        served.start(partial(self._dead, served))
        try:
            if self.settings.warmup:
                await served.warm_up()
            else:
                served.warm = True
        except BaseException:
            await served.stop(shutting_down())
            raise
        served.metrics.load_seconds.set(served.load_seconds)
        self.drain.watch(served.budget)
        self.models[served.name] = served
        self._served.add(served.name)
        log.info("loaded %s (%s, %s, sha256 %s…) on %s in %.2f s", served.name, served.kind,
                 served.runtime.name, served.checkpoint.sha256[:12], served.device,
                 served.load_seconds)

    async def load_all(self) -> None:
        """The startup load. Under the reload lock: a SIGHUP meanwhile reloads after it."""
        async with self._reload_lock:
            for folder in discover(self.settings.checkpoint_dir):
                try:
                    files = folder_files(folder)  # before loading: a change meanwhile shows
                    await self.add(load_model(folder, self.settings, self.metrics))
                except Exception:  # the service does not start; the error says why
                    self.metrics.count_load(folder.name, "refused")
                    raise
                self._files[folder.name] = files
                self.metrics.count_load(folder.name, "ok")

    async def reload(self) -> ReloadReport:
        """Load what changed on disk, keep what did not, retire what is gone.

        ``StartupError`` (nothing changes) when the checkpoint directory is gone or holds no model:
        what the service would refuse to start with, it does not reload into either.
        """
        async with self._reload_lock:
            report = ReloadReport()
            folders = discover(self.settings.checkpoint_dir)
            for folder in folders:
                await self._reload_one(folder, report)
            gone, unreadable = self._missing(folders)
            for name, problem in unreadable.items():
                self._refuse(report, name, problem)
            for name in gone:
                self._retire(self.models.pop(name))
                del self._files[name]
                report.retired.append(name)
                log.info("retired %s: its folder is gone", name)
            return report

    async def check(self) -> ReloadReport:
        """What a reload of several workers will do, without doing it here: each changed or new
        checkpoint is verified (``verify``), not loaded. Such a reload replaces every worker, each
        loading from disk, so it is all or nothing: with anything refused, nothing is to load or
        retire. ``StartupError`` as ``reload``."""
        async with self._reload_lock:
            report = ReloadReport()
            folders = discover(self.settings.checkpoint_dir)
            for folder in folders:
                try:
                    if await self._unchanged(folder):
                        report.unchanged.append(folder.name)
                        continue
                    await run_in_threadpool(verify, folder)
                except Exception as exc:
                    self._refuse(report, folder.name, exc)
                    continue
                report.loaded.append(folder.name)
            report.retired, unreadable = self._missing(folders)
            for name, problem in unreadable.items():
                self._refuse(report, name, problem)
            if report.refused:
                report.unchanged = sorted(report.unchanged + report.loaded)
                report.loaded, report.retired = [], []
            return report

    async def _reload_one(self, folder: Path, report: ReloadReport) -> None:
        name, current = folder.name, self.models.get(folder.name)
        try:
            if await self._unchanged(folder):
                report.unchanged.append(name)
                return
            files = folder_files(folder)  # before loading: a change meanwhile shows next time
            new = await run_in_threadpool(load_model, folder, self.settings, self.metrics)
            await self.add(new)
            self._files[name] = files
        except Exception as exc:  # any failure keeps the old model serving
            self._refuse(report, name, exc)
            return
        self.metrics.count_load(name, "ok")
        report.loaded.append(name)
        if current is not None:
            self._retire(current)

    def _missing(self, folders: list[Path]) -> tuple[list[str], dict[str, CheckpointError]]:
        """The served models that ``folders`` lacks: those whose folder is gone (or hidden: set
        aside), to retire; and those whose folder is still there without a readable config.json
        (a copy half done, a mistake), refused: the old one keeps serving."""
        gone, unreadable = [], {}
        for name in sorted(set(self.models) - {f.name for f in folders}):
            folder = self.settings.checkpoint_dir / name
            if folder.is_dir():
                unreadable[name] = CheckpointError(folder, CONFIG_FILE, "file is missing")
            else:
                gone.append(name)
        return gone, unreadable

    async def _unchanged(self, folder: Path) -> bool:
        """Whether ``folder`` holds the checkpoint already served under its name: the same
        config.json, which pins the weights' sha256, and the same files as at load, by their stat.
        Files written or replaced since under the same config.json are verified again (hash,
        shapes): the same bytes are unchanged; other ones raise ``CheckpointError`` naming the file,
        which a restart would refuse too."""
        current = self.models.get(folder.name)
        if current is None or read_meta(folder) != current.meta:
            return False
        files = folder_files(folder)  # before verifying: a change meanwhile shows next time
        if files != self._files.get(folder.name):
            await run_in_threadpool(verify, folder)
            self._files[folder.name] = files
        return True

    def _refuse(self, report: ReloadReport, name: str, exc: Exception) -> None:
        """A checkpoint that failed: one log line, a metric, and its reason in the report.

        A bad checkpoint (``CheckpointError``) is one clean line; anything else (a bug in loading,
        the device) comes with its traceback. A name that never served keeps no metric series but
        its loads (its load may have made them before it failed)."""
        serving = "the old one keeps serving" if name in self.models else "not served"
        if isinstance(exc, CheckpointError):
            log.error("reload refused %s, %s: %s", name, serving, exc)
        else:
            log.error("reload refused %s, %s: %s: %s", name, serving, type(exc).__name__, exc,
                      exc_info=exc)
        self.metrics.count_load(name, "refused")
        if name not in self._served:
            self.metrics.forget(name)
        report.refused[name] = str(exc)

    def _retire(self, old: ServedModel) -> None:
        """Stop ``old`` once the requests holding it have finished (``stop_all`` stops it sooner)."""
        self.retiring.add(old)

        async def retire() -> None:
            await old.budget.wait_idle()
            await self._stop(old, shutting_down())
            log.info("stopped the old %s (sha256 %s…): its last request finished", old.name,
                     old.checkpoint.sha256[:12])

        self.background(retire(), f"retire-{old.name}")

    def _dead(self, served: ServedModel) -> None:
        """``served``'s batch worker stopped by a bug: ``on_dead`` when it is the model serving
        its name (a replaced one on its way out is stopped anyway). It is a failure unless the
        service was already stopping (draining) and every request of the model had been answered
        (by the drain timeout, its deadline, its client leaving): then its death loses nothing."""
        if self.on_dead is None or self.models.get(served.name) is not served:
            return
        unanswered = any(ticket.error is None for ticket in served.budget.live)
        self.on_dead(served.name, unanswered or not self.drain.draining)

    def background(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``work`` as a task of the registry's: ``stop_all`` cancels it; an error it ends
        with is logged with its traceback when it ends."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s failed", task.get_name(), exc_info=exc)

    async def _stop(self, served: ServedModel, error: ApiError) -> None:
        await served.stop(error)
        self.retiring.discard(served)
        self.drain.unwatch(served.budget)

    async def stop_all(self, error: ApiError) -> None:
        """At shutdown: cancel the reloads and retirements under way, then stop every model,
        retiring ones too; whatever they still hold or queue fails with ``error``."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # each logs its own error
        for served in [*self.retiring, *self.models.values()]:
            await self._stop(served, error)


def reload_in_background(registry: Registry) -> asyncio.Task[None]:
    """SIGHUP's action: a reload, logged; the signal handler cannot await it."""
    async def run() -> None:
        try:
            report = await registry.reload()
        except StartupError as exc:
            log.error("reload refused: %s; the loaded models serve on", exc)
            return
        log.info("reload: %s", report.summary())

    return registry.background(run(), "reload")
