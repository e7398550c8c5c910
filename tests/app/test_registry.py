"""Finding, verifying and loading checkpoints: each kind's class, one-line startup errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.kinds.autoencoder import Autoencoder, VariationalAutoencoder
from app.metrics import Metrics
from app.registry import StartupError, discover, load_model, preflight
from app.settings import Settings
from model.checkpoint import CheckpointError


def settings_for(checkpoints: Path) -> Settings:
    return Settings(checkpoint_dir=checkpoints, runtime="torch", torch_threads=1)


def test_discover_lists_model_folders_by_name_and_skips_the_rest(
    tiny_checkpoints: Path, tmp_path: Path
) -> None:
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root)
    (root / "notes").mkdir()  # no config.json: not a model
    shutil.copytree(root / "mnist-dae", root / ".mnist-dae.staged")  # hidden: being staged
    (root / "README.txt").write_text("a file, not a folder")
    assert [p.name for p in discover(root)] == ["mnist-dae", "mnist-vae"]


def test_a_missing_or_empty_checkpoint_directory_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"does not exist.*AESERVE_CHECKPOINT_DIR"):
        discover(tmp_path / "nowhere")
    with pytest.raises(StartupError, match="no model folder"):
        discover(tmp_path)


def test_preflight_verifies_every_checkpoint_and_names_them(tiny_checkpoints: Path) -> None:
    assert preflight(settings_for(tiny_checkpoints)) == ["mnist-dae", "mnist-vae"]


def test_an_unknown_kind_is_refused_naming_the_folder(tiny_checkpoints: Path, tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints / "mnist-dae", root / "odd")
    config = root / "odd" / "config.json"
    meta = json.loads(config.read_text())
    meta["kind"] = "gan"
    config.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as err:
        preflight(settings_for(root))
    assert "odd" in str(err.value)


@pytest.mark.parametrize(("name", "cls"), [("mnist-dae", Autoencoder),
                                           ("mnist-vae", VariationalAutoencoder)])
def test_load_model_picks_the_class_of_the_kind(tiny_checkpoints: Path, name: str, cls: type) -> None:
    served = load_model(tiny_checkpoints / name, settings_for(tiny_checkpoints), Metrics())
    assert type(served) is cls and served.name == name
    assert not served.warm and served.load_seconds > 0
    assert served.card()["runtime"] == "torch" and served.card()["sha256"] == served.checkpoint.sha256
