"""Presets: every named recipe builds, and each takes only the flags its kind of model reads."""

from __future__ import annotations

import pytest

from model.cli import UsageError
from model.kinds import KINDS
from model.networks import build_model
from model.presets import PRESETS, get_preset
from model.train import parse_args


def test_an_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match=r"unknown preset 'nope' \(known: mnist-dae, mnist-vae, "
                                         r"photo-denoiser, photo-gray, photo-color\)"):
        get_preset("nope")


def test_every_preset_is_a_fresh_recipe_that_builds_its_network() -> None:
    for name, make in PRESETS.items():
        cfg = get_preset(name)
        assert cfg.train.preset == name and cfg.model.kind in KINDS
        cfg.train.lr = -1.0  # a run's flags change its own copy, never the preset
        assert get_preset(name) == make() and make().train.lr > 0
        build_model(cfg.model)


def test_every_preset_takes_the_flags_its_kind_declares_and_refuses_the_others() -> None:
    """What a preset's kind declares (``KindSpec.train_flags``) is what parsing accepts, for every preset."""
    values = {"--patches-per-epoch": "100", "--sigma-weight-floor": "0.1", "--extra-convs": "1",
              "--latent-dim": "8"}
    assert set(values) == {flag for spec in KINDS.values() for flag in spec.train_flags}
    for preset in PRESETS:
        takes = KINDS[get_preset(preset).model.kind].train_flags
        for flag, value in values.items():
            argv = ["--preset", preset, "--data-dir", "d", "--out", "o", flag, value]
            if flag in takes:
                assert getattr(parse_args(argv), flag[2:].replace("-", "_")) is not None
            else:
                with pytest.raises(UsageError, match=f"^{flag} does not apply to preset {preset} "):
                    parse_args(argv)
