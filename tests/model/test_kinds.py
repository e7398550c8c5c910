"""``KINDS``: every kind of model is complete in its one entry, and an entry is all a kind needs."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest
from torch import nn

from model.checkpoint import CONFIG_FILE, FORMAT_VERSION
from model.cli import UsageError
from model.config import Kind, ModelConfig
from model.evaluate import evaluate
from model.evaluate import parse_args as evaluate_args
from model.kinds import KINDS, kind_spec, resolve
from model.networks import DenoisingAutoencoder, build_model
from model.train import parse_args as train_args


def test_the_config_names_every_kind_and_only_those() -> None:
    assert set(typing.get_args(Kind)) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_has_a_network_task_evaluator_and_flags_that_exist(kind: str) -> None:
    spec = KINDS[kind]
    network = resolve(spec.network)
    assert isinstance(network, type) and issubclass(network, nn.Module)
    assert callable(resolve(spec.task)) and callable(resolve(spec.evaluate))
    evaluate_flags = vars(evaluate_args(["--checkpoint", "c", "--data-dir", "d", "--out", "o"]))
    if spec.noise_scale is not None:
        assert spec.noise_scale.low < spec.noise_scale.high
        assert {flag[2:].replace("-", "_") for flag in spec.noise_scale.flags} <= set(evaluate_flags)
    train_flags = vars(train_args(["--preset", "mnist-dae", "--data-dir", "d", "--out", "o"]))
    assert {flag[2:].replace("-", "_") for flag in spec.train_flags} <= set(train_flags)


def test_a_kind_is_its_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """What an entry says is what the network and the checkpoint's facts follow, with no other
    table to edit."""
    monkeypatch.setitem(KINDS, "flat", dataclasses.replace(KINDS["dae"], has_latent=False))
    cfg = ModelConfig(kind="flat")  # type: ignore[arg-type]
    assert isinstance(build_model(cfg), DenoisingAutoencoder) and not cfg.has_latent
    assert ModelConfig(kind="vae").has_latent and not ModelConfig(kind="photo").has_latent


def test_an_unknown_kind_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown model kind 'gan' \(known: dae, vae, photo\)"):
        build_model(ModelConfig(kind="gan"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown model kind 'gan'"):
        kind_spec("gan")
    (tmp_path / CONFIG_FILE).write_text(json.dumps(
        {"format_version": FORMAT_VERSION, "kind": "gan", "config": {}, "weights_sha256": ""}))
    with pytest.raises(UsageError, match=r"unknown model kind 'gan' \(known: dae, vae, photo\)"):
        evaluate(["--checkpoint", str(tmp_path), "--data-dir", str(tmp_path),
                  "--out", str(tmp_path / "out")])
