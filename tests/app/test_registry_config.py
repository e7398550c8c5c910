"""A checkpoint's config.json is read once per load: the kind that picks the adapter and the
network built under it come from the same text, whatever lands in the folder meanwhile."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from app.metrics import Metrics
from app.registry import load_model, verify
from app.settings import Settings
from model.checkpoint import CheckpointError


def swapped_after_first_read(monkeypatch: pytest.MonkeyPatch, folder: Path, source: Path) -> None:
    """Once ``folder``'s config.json has been read, a deployment puts ``source`` there instead
    (another kind of model: its own config.json and weights)."""
    config = folder / "config.json"
    read_text: Callable[..., str] = Path.read_text
    swapped = False

    def read_then_swap(self: Path, *args: object, **kwargs: object) -> str:
        nonlocal swapped
        text = read_text(self, *args, **kwargs)
        if self == config and not swapped:
            swapped = True
            shutil.rmtree(folder)
            shutil.copytree(source, folder)
        return text

    monkeypatch.setattr(Path, "read_text", read_then_swap)


@pytest.mark.parametrize("load", [
    lambda folder, settings: load_model(folder, settings, Metrics()),
    lambda folder, settings: verify(folder),
], ids=["load_model", "verify"])
def test_a_checkpoint_replaced_while_loading_is_refused_not_mixed(
    tiny_checkpoints: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    load: Callable[[Path, Settings], object],
) -> None:
    folder = tmp_path / "checkpoints" / "model"
    shutil.copytree(tiny_checkpoints / "mnist-dae", folder)
    settings = Settings(checkpoint_dir=folder.parent, runtime="torch", torch_threads=1)
    swapped_after_first_read(monkeypatch, folder, tiny_checkpoints / "mnist-vae")
    # the dae's config.json was read: the vae's weights now there do not match its sha256; the
    # dae's adapter never gets the vae's network (nor the vae's config, read a second time)
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load(folder, settings)
