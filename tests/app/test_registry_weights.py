"""A reload sees weights that changed under an unchanged config.json: corrupt ones are refused now,
as a restart would refuse them, while the old model serves on; the same bytes written again are
unchanged. On the real tiny checkpoints, through ``Registry.reload`` and ``Registry.check``."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from app.drain import Drain, shutting_down
from app.metrics import Metrics
from app.registry import Registry, ReloadReport
from app.settings import Settings

LONG_S = 600.0  # a drain timeout no test reaches
WEIGHTS = "model.safetensors"


def flipped(data: bytes) -> bytes:
    """The same number of bytes, one of them changed: the sha256 in config.json no longer matches."""
    changed = bytearray(data)
    changed[-8] ^= 0xFF
    return bytes(changed)


def swapped(root: Path, name: str, change: Callable[[bytes], bytes]) -> None:
    """The documented update: a copy of the folder staged under a hidden name, its weights
    changed (config.json copied as it is), then renamed into place."""
    staged = root / f".{name}.new"
    shutil.copytree(root / name, staged)
    weights = staged / WEIGHTS
    weights.write_bytes(change(weights.read_bytes()))
    (root / name).rename(root / f".{name}.old")
    staged.rename(root / name)


def in_place(root: Path, name: str, change: Callable[[bytes], bytes]) -> None:
    """The weights written over in place, their size and modification time as they were: only
    the change time (which no one can set back) tells."""
    weights = root / name / WEIGHTS
    before = weights.stat()
    weights.write_bytes(change(weights.read_bytes()))
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))


def rewritten(root: Path, name: str, change: Callable[[bytes], bytes]) -> None:
    """The weights written again in place, their modification time moved on."""
    weights = root / name / WEIGHTS
    before = weights.stat()
    weights.write_bytes(change(weights.read_bytes()))
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


async def after_change(root: Path, update: Callable[[Path, str, Callable[[bytes], bytes]], None],
                       change: Callable[[bytes], bytes]) -> tuple[list[ReloadReport], bool, Registry]:
    """Load ``root``, change mnist-dae's weights, then check, reload and reload again: the three
    reports, and whether the model loaded at start still serves (and is not being retired)."""
    registry = Registry(Settings(checkpoint_dir=root, runtime="torch", torch_threads=1), Metrics(),
                        Drain(LONG_S))
    await registry.load_all()
    old = registry.models["mnist-dae"]
    update(root, "mnist-dae", change)
    reports = [await registry.check(), await registry.reload(), await registry.reload()]
    serving = registry.models["mnist-dae"] is old and old not in registry.retiring
    await registry.stop_all(shutting_down())
    return reports, serving, registry


def loads(registry: Registry, result: str) -> float:
    return float(registry.metrics.loads.labels("mnist-dae", result)._value.get())


@pytest.mark.parametrize("update", [swapped, in_place], ids=["folder-swapped", "written-in-place"])
def test_corrupt_weights_under_the_same_config_are_refused_and_the_old_model_serves_on(
    tiny_checkpoints: Path, tmp_path: Path,
    update: Callable[[Path, str, Callable[[bytes], bytes]], None],
) -> None:
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root)
    reports, serving, registry = asyncio.run(after_change(root, update, flipped))
    for report in reports:  # each time: the folder stays what a restart would refuse
        assert list(report.refused) == ["mnist-dae"], report
        reason = report.refused["mnist-dae"]
        assert f"{root / 'mnist-dae'}: {WEIGHTS}: sha256 mismatch" in reason, reason
        assert report.unchanged == ["mnist-vae"] and report.loaded == [] and report.retired == []
    assert serving
    assert loads(registry, "refused") == 3 and loads(registry, "ok") == 1


@pytest.mark.parametrize("update", [swapped, rewritten], ids=["folder-swapped", "written-in-place"])
def test_the_same_weights_written_again_are_unchanged(
    tiny_checkpoints: Path, tmp_path: Path,
    update: Callable[[Path, str, Callable[[bytes], bytes]], None],
) -> None:
    """Verified again (their sha256 is config.json's): the model served is the one on disk, and is
    neither loaded again nor replaced."""
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root)
    reports, serving, registry = asyncio.run(after_change(root, update, lambda data: data))
    for report in reports:
        assert report.unchanged == ["mnist-dae", "mnist-vae"] and report.refused == {}, report
        assert report.loaded == [] and report.retired == []
    assert serving
    assert loads(registry, "refused") == 0 and loads(registry, "ok") == 1
