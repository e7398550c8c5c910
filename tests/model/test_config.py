"""The config is plain data: it goes to JSON and back unchanged, and refuses what cannot be a network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.config import ModelConfig, RunConfig
from model.presets import PRESETS, get_preset
from tests.conftest import ROOT


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_round_trips_through_json(preset: str) -> None:
    cfg = get_preset(preset)
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_an_unknown_recipe_field_is_left_out_only_when_asked_and_a_model_field_never() -> None:
    data = get_preset("mnist-dae").to_dict()
    data["train"]["from_the_future"] = 1
    with pytest.raises(ValueError, match=r"unknown TrainConfig field\(s\): from_the_future"):
        RunConfig.from_dict(data)
    assert RunConfig.from_dict(data, strict_recipe=False) == get_preset("mnist-dae")
    data["model"]["wings"] = 2
    with pytest.raises(ValueError, match=r"unknown ModelConfig field\(s\): wings"):
        RunConfig.from_dict(data, strict_recipe=False)


@pytest.mark.parametrize("config_json", sorted((ROOT / "checkpoints").rglob("config.json")),
                         ids=lambda path: str(path.parent.relative_to(ROOT / "checkpoints")))
def test_a_retired_field_of_a_saved_config_is_left_out(config_json: Path) -> None:
    """``train.patch_size`` duplicated the photo patch (``model.image_size``) and was never read:
    the shipped config.json files (and training states) that carry it still read, even strictly
    (``--resume``), and what they read no longer has it."""
    saved = json.loads(config_json.read_text())["config"]
    assert "patch_size" in saved["train"]
    read = RunConfig.from_dict(saved)
    assert read == RunConfig.from_dict(saved, strict_recipe=False)
    assert "patch_size" not in read.to_dict()["train"]
    assert read.model.image_size == saved["model"]["image_size"]


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("depth", 0, "depth must be an integer of at least 1, got 0"),
    ("extra_convs", True, "extra_convs must be an integer of at least 0, got True"),
    ("hidden", [32, 0], "hidden must be a list of integers of at least 1, got [32, 0]"),
    ("sigma", 0.0, "sigma must be a number above 0, got 0.0"),
    ("value_range", [0.0], "value_range must be [low, high] with low < high, got [0.0]"),
])
def test_a_model_config_that_cannot_build_a_network_names_the_field(
    field: str, value: object, problem: str
) -> None:
    with pytest.raises(ValueError) as refused:
        ModelConfig(**{field: value})  # type: ignore[arg-type]
    assert str(refused.value) == problem
