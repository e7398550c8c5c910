"""--init-from: a run continues from a checkpoint's weights and its config.json records the chain."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint, save_checkpoint
from model.cli import UsageError
from model.networks import build_model
from model.photo.pair import main as pair_main
from model.photo.preset import photo_color_preset
from model.train import main
from model.warm_start import warm_start
from tests.conftest import make_photos
from tests.model.commands import run_main, train_tiny_flags
from tests.model.photo.synthetic import save_photo_net

SMALL = ("--hidden", "8", "16", "32", "64", "--batch-size", "4", "--threads", "1")


def test_init_from_continues_the_weights_and_records_the_chain(
    tiny_photo_checkpoint: Path, tmp_path: Path
) -> None:
    first = tiny_photo_checkpoint / "photo-denoiser"
    data = make_photos(tmp_path / "photos", 6, 64, 0)
    second, third = tmp_path / "second", tmp_path / "third"
    # a learning rate so small that the two steps barely move the weights: what comes out is
    # the first checkpoint's weights, continued, not a fresh network
    for source, out in ((first, second), (second, third)):
        result = run_main(main, *train_tiny_flags("photo-denoiser", data, out, "--max-steps", "2",
                                                  "--lr", "1e-7", "--init-from", str(source), *SMALL))
        assert result.returncode == 0, result.stderr[-2000:]
    a, b, c = (load_checkpoint(p) for p in (first, second, third))
    fresh = build_model(b.config.model).state_dict()
    for key, value in b.model.state_dict().items():
        assert torch.allclose(value, a.model.state_dict()[key], atol=1e-4), key
    assert any(not torch.allclose(v, fresh[k], atol=1e-2) for k, v in a.model.state_dict().items())
    training = c.meta["training"]
    assert [run["steps"] for run in training["chain"]] == [4, 2, 2]
    assert training["total_steps"] == 8
    assert training["init_from"] == {"path": str(second), "weights_sha256": b.sha256}
    assert training["chain"][1]["init_from"] == a.sha256 and training["chain"][2]["init_from"] == b.sha256
    assert all(run["command"].startswith("python -m model.train") for run in training["chain"])
    assert all(set(run) == {"command", "steps", "init_from"} for run in training["chain"])
    assert "--init-from" in training["chain"][2]["command"]


def test_a_resumed_run_keeps_the_checkpoint_it_started_from(
    tiny_photo_checkpoint: Path, tmp_path: Path
) -> None:
    """--resume takes no --init-from (test_train.py): the chain keeps the saved run's origin."""
    first = load_checkpoint(tiny_photo_checkpoint / "photo-denoiser")
    data, out = make_photos(tmp_path / "photos", 6, 64, 0), tmp_path / "run"
    started = run_main(main, *train_tiny_flags("photo-denoiser", data, out, "--max-steps", "1",
                                               "--init-from", str(first.path), *SMALL))
    assert started.returncode == 0, started.stderr[-2000:]
    resumed = run_main(main, *train_tiny_flags("photo-denoiser", data, out, "--max-steps", "2",
                                               "--resume", *SMALL))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    training = load_checkpoint(out).meta["training"]
    assert training["steps"] == 2 and training["total_steps"] == 4 + 2
    assert training["init_from"] == {"path": str(first.path), "weights_sha256": first.sha256}
    assert [run["init_from"] for run in training["chain"]] == [None, first.sha256]
    assert "--init-from" in training["chain"][1]["command"] and "--resume" not in training["command"]


def test_a_gray_checkpoint_starts_a_colour_network_as_the_gray_one_on_luminance(
    tiny_photo_checkpoint: Path, tmp_path: Path
) -> None:
    gray_ck = load_checkpoint(tiny_photo_checkpoint / "photo-denoiser")
    with torch.no_grad():  # a network that does something, so the comparison means something
        for p in gray_ck.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    cfg = photo_color_preset().model
    colour = build_model(dataclasses.replace(cfg, hidden=gray_ck.config.model.hidden)).eval()
    folder = tmp_path / "perturbed"
    save_checkpoint(folder, gray_ck.model, gray_ck.config, extra={"training": gray_ck.meta["training"]})
    record = warm_start(colour, folder, 3)
    assert record["chain"][0]["steps"] == 4 and record["weights_sha256"] == load_checkpoint(folder).sha256
    x = torch.rand(1, 1, 32, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = gray_ck.model.eval()(x)
        out = colour(x.expand(1, 3, 32, 40))
    for c in range(3):
        assert torch.allclose(out[:, c : c + 1], expected, atol=1e-5)


def test_init_from_refuses_other_widths(tiny_photo_checkpoint: Path) -> None:
    net = build_model(photo_color_preset().model)  # widths 32..256, the checkpoint's are 8..64
    with pytest.raises(UsageError, match=r"head\.0\.weight"):
        warm_start(net, tiny_photo_checkpoint / "photo-denoiser", 3)


def test_a_colour_run_from_a_paired_checkpoint_starts_from_its_colour_network(tmp_path: Path) -> None:
    gray = save_photo_net(tmp_path / "photo-denoiser", 1, 0)
    assert pair_main([str(gray), "--colour", str(save_photo_net(tmp_path / "run", 3, 1))]) == 0
    colour_ck = load_checkpoint(gray / "colour")
    net = build_model(colour_ck.config.model)
    record = warm_start(net, gray, 3)
    assert record["path"] == str(gray / "colour") and record["weights_sha256"] == colour_ck.sha256
    for key, value in net.state_dict().items():
        assert torch.equal(value, colour_ck.model.state_dict()[key]), key
    gray_net = build_model(load_checkpoint(gray).config.model)
    assert warm_start(gray_net, gray, 1)["weights_sha256"] == load_checkpoint(gray).sha256


def test_init_from_a_run_that_has_only_its_state_says_to_resume_it(tmp_path: Path) -> None:
    """A run stopped before its first validation leaves ``.state/`` and no checkpoint: ``--init-from``
    it said only 'config.json: file is missing', as for a folder that is no run at all."""
    run = tmp_path / "run"
    (run / ".state").mkdir(parents=True)
    (run / ".state" / "state.json").write_text("{}")
    net = build_model(photo_color_preset().model)
    with pytest.raises(UsageError, match=rf"--init-from {run}: no checkpoint there yet, only a "
                       rf"training state .*: continue that run with --resume --out {run}"):
        warm_start(net, run, 3)
