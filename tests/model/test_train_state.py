"""The state behind --resume: each rank gets its own RNG back, and only the same run continues."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from model.checkpoint import CheckpointError
from model.cli import UsageError
from model.presets import get_preset
from model.train_state import data_fingerprint, load_state, refuse_overwrite, resume_info, save_state


def test_each_rank_resumes_its_own_random_stream(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    ranks = [torch.Generator().manual_seed(7919 * 5 + rank) for rank in range(2)]  # as the trainer seeds
    for gen in ranks:
        torch.rand(10, generator=gen)  # each rank's stream moved on
    save_state(tmp_path, model, opt, {"step": 1}, torch.stack([gen.get_state() for gen in ranks]))

    draws = []
    for rank, gen in enumerate(ranks):
        other = nn.Linear(3, 2)
        other_opt = torch.optim.AdamW(other.parameters())
        resumed = torch.Generator().manual_seed(5)
        load_state(tmp_path, other, other_opt, resumed, rank)
        assert torch.equal(resumed.get_state(), gen.get_state())
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in other.state_dict().items())
        moments = other_opt.state_dict()["state"][0]
        assert torch.equal(moments["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
        draws.append(torch.rand(4, generator=resumed))
    assert not torch.equal(draws[0], draws[1])


def test_resume_continues_only_the_same_run(tmp_path: Path) -> None:
    folder = tmp_path / ".state"
    folder.mkdir()
    run = {"config": get_preset("mnist-dae").to_dict(), "limit": 0, "world_size": 2, "device": "cpu"}
    (folder / "state.json").write_text(json.dumps({"step": 4, "run": run}))
    longer = copy.deepcopy(run)
    longer["config"]["train"].update(epochs=99, max_steps=1000)  # training longer is the same run
    assert resume_info(folder, longer)["step"] == 4

    other = copy.deepcopy(run)
    other["config"]["train"]["lr"] = 0.5
    other["world_size"] = 1
    with pytest.raises(UsageError) as refused:
        resume_info(folder, other)
    lr = run["config"]["train"]["lr"]
    assert f"config.train.lr was {lr!r}, now 0.5; world_size was 2, now 1" in str(refused.value)

    with pytest.raises(UsageError, match=r"already holds a run's training state \(step 4\).*--resume"):
        refuse_overwrite(folder)
    refuse_overwrite(tmp_path / "elsewhere" / ".state")  # nothing there: a fresh run may start

    (folder / "state.json").write_text(json.dumps({"step": 4}))  # saved before runs were recorded
    with pytest.raises(UsageError, match="did not record its config"):
        resume_info(folder, run)
    with pytest.raises(UsageError, match="no training state"):
        resume_info(tmp_path / "elsewhere", run)


def test_resume_refuses_other_data_and_takes_the_same_data_elsewhere(tmp_path: Path) -> None:
    """Resuming on a test set instead of the training set would train on it without a word."""
    train, moved, test = (tmp_path / name for name in ("train", "moved", "test"))
    for folder, sizes in ((train, (3, 5)), (moved, (3, 5)), (test, (3, 4))):
        folder.mkdir()
        for i, size in enumerate(sizes):
            (folder / f"{i}.png").write_bytes(bytes(size))
    state = tmp_path / "out" / ".state"
    state.mkdir(parents=True)
    run = {"config": get_preset("photo-gray").to_dict(), "data": data_fingerprint([train]),
           "limit": 0, "world_size": 1, "device": "cpu"}
    (state / "state.json").write_text(json.dumps({"step": 4, "run": run}))
    assert resume_info(state, {**run, "data": data_fingerprint([moved])})["step"] == 4
    with pytest.raises(UsageError, match=r"data was \['2 files, [0-9a-f]+'\], now \['2 files, [0-9a-f]+'\]"):
        resume_info(state, {**run, "data": data_fingerprint([test])})
    older = {k: v for k, v in run.items() if k != "data"}  # saved before data was fingerprinted
    (state / "state.json").write_text(json.dumps({"step": 4, "run": older}))
    assert resume_info(state, {**run, "data": data_fingerprint([test])})["step"] == 4


def test_a_state_saved_before_a_recipe_field_was_recorded_resumes_with_its_default(tmp_path: Path) -> None:
    folder = tmp_path / ".state"
    folder.mkdir()
    run = {"config": get_preset("photo-denoiser").to_dict(), "limit": 0, "world_size": 1, "device": "cpu"}
    older = copy.deepcopy(run)
    del older["config"]["train"]["lr_warmup_steps"], older["config"]["train"]["known_fraction"]
    (folder / "state.json").write_text(json.dumps({"step": 4, "run": older}))
    # the defaults are the values those runs trained with: the same run, recorded in full from now on
    assert resume_info(folder, run)["run"] == run

    changed = copy.deepcopy(run)
    changed["config"]["train"]["known_fraction"] = 0.5
    with pytest.raises(UsageError, match=r"config\.train\.known_fraction was 0\.25, now 0\.5"):
        resume_info(folder, changed)
    older["config"]["train"]["from_the_future"] = 1  # a field this model.train does not know
    (folder / "state.json").write_text(json.dumps({"step": 4, "run": older}))
    with pytest.raises(UsageError, match="from_the_future"):
        resume_info(folder, run)


@pytest.mark.parametrize(("dtype", "shape", "found"), [
    (torch.float16, (2, 3), "float16 (2, 3)"),
    (torch.float32, (2, 4), "float32 (2, 4)"),
])
def test_resumed_weights_of_another_dtype_or_shape_are_refused_not_cast(
    tmp_path: Path, dtype: torch.dtype, shape: tuple[int, ...], found: str
) -> None:
    """As a checkpoint's weights are: one CheckpointError naming the tensor, and nothing loaded."""
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    save_state(tmp_path, model, opt, {"step": 1}, torch.Generator().get_state()[None])
    tensors = load_file(tmp_path / "state.safetensors")
    tensors["model.weight"] = torch.zeros(shape, dtype=dtype)
    save_file(tensors, tmp_path / "state.safetensors")

    other = nn.Linear(3, 2)
    before = other.weight.detach().clone()
    with pytest.raises(CheckpointError) as refused:
        load_state(tmp_path, other, torch.optim.AdamW(other.parameters()), torch.Generator(), 0)
    assert refused.value.file == "state.safetensors"
    assert refused.value.problem == ("tensor model.weight: expected float32 (2, 3) (what state.json builds), "
                                     f"found {found}")
    assert torch.equal(other.weight, before)


@pytest.mark.parametrize("damage", ["cut short", "not an object", "no weights", "weights cut short"])
def test_a_damaged_state_is_a_usage_error_naming_the_file(tmp_path: Path, damage: str) -> None:
    """A state whose files were cut short (a copy interrupted, a full disk) or removed answers in
    one line naming the file, for ``--resume`` and for a fresh run over it alike; it was a
    traceback from the JSON or safetensors reader."""
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    run = {"config": get_preset("mnist-dae").to_dict(), "limit": 0, "world_size": 1, "device": "cpu"}
    save_state(tmp_path, model, opt, {"step": 1, "run": run}, torch.Generator().get_state()[None])
    state_json, weights = tmp_path / "state.json", tmp_path / "state.safetensors"
    if damage == "cut short":
        state_json.write_text(state_json.read_text()[:40])
    elif damage == "not an object":
        state_json.write_text("[1, 2]")
    elif damage == "no weights":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:100])
    damaged = state_json if damage in ("cut short", "not an object") else weights
    said = rf"{damaged}: the training state is damaged \(.*\); train into another --out, or delete"
    with pytest.raises(UsageError, match=said):
        resume_info(tmp_path, run)
        load_state(tmp_path, model, opt, torch.Generator(), 0)
    if damaged == state_json:
        with pytest.raises(UsageError, match=said):
            refuse_overwrite(tmp_path)


def test_a_fresh_run_refuses_an_out_that_holds_a_checkpoint(tmp_path: Path) -> None:
    """A checkpoint without its training state (a shipped one, one unpacked from a GPU window) was
    overwritten by a fresh run's first validation, a smoke run's included: it had no other copy."""
    out = tmp_path / "mnist-dae"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(UsageError, match=r"--out .*mnist-dae already holds a checkpoint, which this "
                       r"run would replace at its first validation: train into another --out"):
        refuse_overwrite(out / ".state")
    refuse_overwrite(tmp_path / "empty" / ".state")  # an empty or new folder is fine
