"""The checkpoint contract: bit-identical round trips, and every broken checkpoint refused clearly."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, sha256_file
from model.networks import build_model
from model.presets import get_preset


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    cfg = get_preset("mnist-vae")
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "vae", build_model(cfg.model), cfg, extra={"note": "test"})
    return tmp_path / "vae"


@pytest.mark.parametrize("preset", ["mnist-dae", "mnist-vae"])
def test_save_load_gives_bit_identical_outputs(tmp_path: Path, preset: str) -> None:
    cfg = get_preset(preset)
    torch.manual_seed(1)
    model = build_model(cfg.model).eval()
    save_checkpoint(tmp_path / preset, model, cfg)
    loaded = load_checkpoint(tmp_path / preset)
    x = torch.rand(8, *cfg.model.input_shape)
    with torch.no_grad():
        assert torch.equal(model.denoise(x), loaded.model.denoise(x))  # type: ignore[operator]
    assert not loaded.model.training
    assert loaded.meta["input_shape"] == [1, 28, 28]
    assert len(loaded.sha256) == 64


def test_config_carries_what_rebuilds_the_model(saved: Path) -> None:
    meta = json.loads((saved / "config.json").read_text())
    assert meta["format_version"] == 1
    assert meta["kind"] == "vae"
    assert meta["config"]["model"]["latent_dim"] == meta["latent_dim"]
    assert meta["torch_version"] == torch.__version__
    assert meta["note"] == "test"


def test_corrupt_weights_are_refused(saved: Path) -> None:
    data = bytearray((saved / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (saved / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: sha256 mismatch"):
        load_checkpoint(saved)


def test_truncated_weights_are_refused(saved: Path) -> None:
    path = saved / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: sha256 mismatch") as err:
        load_checkpoint(saved)
    assert str(saved) in str(err.value)


def test_truncated_file_with_matching_hash_is_unreadable(saved: Path) -> None:
    """Even when config.json is made to agree, a torn safetensors file is refused by its parser."""
    path = saved / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    meta = json.loads((saved / "config.json").read_text())
    from model.checkpoint import sha256_file

    meta["weights_sha256"] = sha256_file(path)
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: unreadable safetensors"):
        load_checkpoint(saved)


def test_wrong_format_version_is_refused(saved: Path) -> None:
    meta = json.loads((saved / "config.json").read_text())
    meta["format_version"] = 99
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"config\.json: unsupported format_version 99"):
        load_checkpoint(saved)


def test_shape_mismatch_is_refused(saved: Path) -> None:
    meta = json.loads((saved / "config.json").read_text())
    meta["config"]["model"]["latent_dim"] = meta["latent_dim"] = 16
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(saved)
    assert refused.value.file == "model.safetensors"
    assert refused.value.problem == ("tensor encoder.head.weight: expected float32 (32, 6272) (what "
                                     "config.json builds), found float32 (128, 6272)")


def rewrite_weights(folder: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    """Change the tensors of ``folder``'s weights file with safetensors and record the new file's
    hash in config.json, as a converter that gets the tensors wrong would."""
    path = folder / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)
    meta = json.loads((folder / "config.json").read_text())
    meta["weights_sha256"] = sha256_file(path)
    (folder / "config.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int64])
def test_a_tensor_of_another_dtype_is_refused_not_cast(saved: Path, dtype: torch.dtype) -> None:
    """Weights saved as float16 (or int64, ...) would load into the float32 network silently cast:
    refused instead, naming the tensor, what the network needs and what the file holds."""
    key = "decoder.project.0.weight"
    shape = tuple(load_checkpoint(saved).model.state_dict()[key].shape)

    def convert(tensors: dict[str, torch.Tensor]) -> None:
        tensors[key] = tensors[key].to(dtype)

    rewrite_weights(saved, convert)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(saved)
    name = str(dtype).removeprefix("torch.")
    assert str(refused.value) == (f"checkpoint {saved}: model.safetensors: tensor {key}: expected "
                                  f"float32 {shape} (what config.json builds), found {name} {shape}")


def test_a_tensor_of_another_shape_in_the_file_is_refused(saved: Path) -> None:
    def transpose(tensors: dict[str, torch.Tensor]) -> None:
        tensors["encoder.head.weight"] = tensors["encoder.head.weight"].t().contiguous()

    rewrite_weights(saved, transpose)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(saved)
    assert refused.value.problem.startswith("tensor encoder.head.weight: expected float32 (")
    assert refused.value.problem.endswith(f"found float32 {(6272, 128)}")


def test_rewritten_tensors_of_the_right_dtype_and_shape_load(saved: Path) -> None:
    """What the refusals above are measured against: the same edit, done right, loads."""
    reference = load_checkpoint(saved).model.state_dict()
    rewrite_weights(saved, lambda tensors: None)
    loaded = load_checkpoint(saved).model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in reference.items())


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_missing_file_is_refused(saved: Path, missing: str) -> None:
    (saved / missing).unlink()
    with pytest.raises(CheckpointError, match=rf"{missing.replace('.', '[.]')}: file is missing"):
        load_checkpoint(saved)


def test_invalid_json_and_unknown_fields_are_refused(saved: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(saved, other)
    (saved / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        load_checkpoint(saved)
    meta = json.loads((other / "config.json").read_text())
    meta["config"]["model"]["wings"] = 2
    (other / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"unknown ModelConfig field\(s\): wings"):
        load_checkpoint(other)


@pytest.mark.parametrize(("edit", "problem"), [
    ({"hidden": []}, "hidden must be a list of integers of at least 1, got []"),
    ({"latent_dim": -1}, "latent_dim must be an integer of at least 1, got -1"),
    ({"channels": "1"}, "channels must be an integer of at least 1, got '1'"),
    ({"image_size": [28]}, "image_size must be a list of 2 integers of at least 1, got [28]"),
    ({"value_range": [1.0, 0.0]}, "value_range must be [low, high] with low < high"),
    (None, "field 'config' must hold a JSON object"),
])
def test_a_config_that_cannot_build_a_network_is_refused_naming_the_field(
    saved: Path, edit: dict[str, object] | None, problem: str
) -> None:
    """A hand-edited or damaged config.json is a CheckpointError (one line at the service's start),
    not an error from deep inside torch."""
    meta = json.loads((saved / "config.json").read_text())
    if edit is None:
        meta["config"] = [1, 2]
    else:
        meta["config"]["model"].update(edit)
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(saved)
    assert refused.value.file == "config.json" and problem in refused.value.problem


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("input_shape", [3, 28, 28], "field 'input_shape' is [3, 28, 28], but the network its 'config' "
                                 "builds has [1, 28, 28]"),
    ("latent_dim", 999, "field 'latent_dim' is 999, but the network its 'config' builds has 64"),
    ("kind", "dae", "field 'kind' is 'dae', but the network its 'config' builds has 'vae'"),
    ("value_range", [0, 255], "field 'value_range' is [0, 255], but the network its 'config' builds "
                              "has [0.0, 1.0]"),
    ("likelihood", "gaussian", "field 'likelihood' is 'gaussian'"),
    ("input_shape", None, "missing field 'input_shape' ([1, 28, 28] for this 'config')"),
])
def test_a_top_level_field_that_disagrees_with_the_config_is_refused(
    saved: Path, key: str, value: object, problem: str
) -> None:
    """The fields a client reads (the service checks inputs against ``input_shape`` and
    ``latent_dim``, picks the kind's adapter by ``kind``) must be what ``config`` builds: edited
    by hand, they made the service's warm-up fail with a traceback from inside torch."""
    meta = json.loads((saved / "config.json").read_text())
    if value is None:
        del meta[key]
    else:
        meta[key] = value
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(saved)
    assert refused.value.file == "config.json" and problem in refused.value.problem


def test_a_recipe_field_it_does_not_know_still_loads(saved: Path) -> None:
    """A checkpoint from a newer model.train (a noise or train field this code lacks) still loads:
    those fields say how it was trained, not what network it is."""
    reference = load_checkpoint(saved)
    meta = json.loads((saved / "config.json").read_text())
    meta["config"]["train"]["lr_schedule_from_the_future"] = "linear"
    meta["config"]["noise"]["speckle"] = 0.1
    (saved / "config.json").write_text(json.dumps(meta))
    loaded = load_checkpoint(saved)
    assert loaded.config == reference.config
    for a, b in zip(loaded.model.state_dict().values(), reference.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_no_pickle_on_the_checkpoint_path(saved: Path) -> None:
    """The weights file is safetensors: a JSON header then raw tensor bytes, no pickle opcodes."""
    raw = (saved / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    assert "encoder.head.weight" in header
    assert not raw.startswith(b"\x80")  # a pickle stream would start with PROTO
