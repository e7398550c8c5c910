"""A photo checkpoint with a native colour network beside its gray one.

A photo checkpoint folder may hold a second, complete photo checkpoint in ``colour/`` (its own
``config.json`` and ``model.safetensors``, verified the same way): a 3-channel network, trained on
colour photos, that denoises an RGB image in one pass. The folder's ``config.json`` pins it::

    "colour": {"folder": "colour", "weights_sha256": "<sha256 of colour/model.safetensors>"}

so the top-level ``config.json`` still names every weight the folder serves, and replacing either
network means writing a new one. ``load_photo`` gives the folder's ``Checkpoint`` with a
``PhotoPair`` as its model: gray images go through the gray network (one pass), RGB images through
the colour one (one pass), where a gray network alone would run five (``model.photo.colour``).

Pair a trained colour run with a checkpoint (copies the run's two files into ``colour/`` and pins
them)::

    python -m model.photo.pair checkpoints/photo-denoiser --colour runs/gpu-photo/home/color
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    read_meta,
    write_config,
)
from model.photo.network import PhotoDenoiser

COLOUR_DIR = "colour"


class PhotoPair(nn.Module):
    """Two photo networks: ``gray`` (1 channel) for gray images, ``colour`` (3) for RGB ones."""

    def __init__(self, gray: PhotoDenoiser, colour: PhotoDenoiser) -> None:
        super().__init__()
        if gray.cfg.channels != 1 or colour.cfg.channels != 3:
            raise ValueError("a photo pair is a 1-channel network and a 3-channel one, got "
                             f"{gray.cfg.channels} and {colour.cfg.channels}")
        self.gray = gray
        self.colour = colour

    def for_channels(self, channels: int) -> PhotoDenoiser:
        """The network that denoises an image of ``channels`` planes (1 gray, 3 RGB)."""
        return self.colour if channels == 3 else self.gray


def load_photo(folder: Path | str, device: str | torch.device = "cpu",
               meta: dict[str, Any] | None = None) -> Checkpoint:
    """``load_checkpoint`` for a photo folder (``meta`` as there): with a pinned ``colour/``
    network, a ``PhotoPair``. For inference: on a CPU the weights are laid out channels-last,
    where PyTorch's CPU convolutions run faster, with the same outputs (docs/benchmarks.md)."""
    folder = Path(folder)
    ckpt = load_checkpoint(folder, device, meta)
    pin = ckpt.meta.get(COLOUR_DIR)
    if pin is None:
        return _channels_last_on_cpu(ckpt)
    if not isinstance(pin, dict) or not isinstance(pin.get("weights_sha256"), str):
        raise CheckpointError(folder, CONFIG_FILE, "'colour' must name a folder and its weights_sha256")
    name = str(pin.get("folder", COLOUR_DIR))
    if name in ("", ".", "..") or Path(name).name != name:
        raise CheckpointError(folder, CONFIG_FILE,
                              f"the colour network's folder must be a subfolder, not {name!r}")
    sub = folder / name
    colour = load_checkpoint(sub, device)  # its own hash and shapes verified
    if colour.sha256 != pin["weights_sha256"]:
        raise CheckpointError(folder, CONFIG_FILE, f"the colour network in {sub.name}/ has weights "
                              f"{colour.sha256[:12]}…, config.json pins {pin['weights_sha256'][:12]}…")
    pair = _paired(folder, ckpt, colour)
    return _channels_last_on_cpu(dataclasses.replace(ckpt, model=pair.to(device).eval()))


def _channels_last_on_cpu(ckpt: Checkpoint) -> Checkpoint:
    """``ckpt`` with its network's weights channels-last when they are on a CPU (in place)."""
    if next(ckpt.model.parameters()).device.type == "cpu":
        ckpt.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # documented; not in the stub
    return ckpt


def _paired(folder: Path, gray: Checkpoint, colour: Checkpoint) -> PhotoPair:
    """The two networks as a pair, or ``CheckpointError`` (naming ``folder``) when they cannot be
    one: another noise range, or not two photo networks of matching shapes."""
    if colour.config.noise.sigma_max != gray.config.noise.sigma_max:
        raise CheckpointError(folder, CONFIG_FILE, "the gray and colour networks were trained on "
                              "different noise ranges")
    gray_net, colour_net = gray.model, colour.model
    if not (isinstance(gray_net, PhotoDenoiser) and isinstance(colour_net, PhotoDenoiser)):
        raise CheckpointError(folder, CONFIG_FILE, "a colour network pairs with a photo checkpoint")
    try:
        return PhotoPair(gray_net, colour_net)
    except ValueError as exc:
        raise CheckpointError(folder, CONFIG_FILE, str(exc)) from exc


def colour_sha256(meta: dict[str, object]) -> str | None:
    """The pinned colour network's weights' sha256, or None for a checkpoint without one."""
    pin = meta.get(COLOUR_DIR)
    return str(pin["weights_sha256"]) if isinstance(pin, dict) and "weights_sha256" in pin else None


def pin_kept(folder: Path) -> dict[str, Any]:
    """``{"colour": pin}`` when the checkpoint in ``folder`` pins a colour network, else ``{}``: what
    a new gray checkpoint written over it keeps (a ``--resume`` of a run paired since), so that the
    folder still serves both networks instead of leaving ``colour/`` unpinned and unserved."""
    if not (folder / COLOUR_DIR).is_dir() or not (folder / CONFIG_FILE).is_file():
        return {}  # nothing paired: config.json is not read
    pin = read_meta(folder).get(COLOUR_DIR)
    return {} if pin is None else {COLOUR_DIR: pin}


def pair(checkpoint: Path, colour_run: Path) -> Checkpoint:
    """Copy ``colour_run``'s checkpoint into ``checkpoint/colour/`` and pin it; returns the pair.

    Both networks are verified, and checked to make a pair, before anything is written; the colour
    run's files are staged in a hidden folder, the old ``colour/`` (if any) is removed and the
    staged one renamed into place, and ``config.json`` is rewritten last (until then a reload
    refuses the mismatch and the old pair keeps serving).
    """
    colour = load_checkpoint(colour_run)
    if colour.config.model.channels != 3:
        raise CheckpointError(colour_run, CONFIG_FILE, "not a colour (3-channel) photo network")
    meta = read_meta(checkpoint)
    if meta.get("kind") != "photo" or meta.get("input_shape", [0])[0] != 1:
        raise CheckpointError(checkpoint, CONFIG_FILE, "a colour network pairs with a gray photo checkpoint")
    _paired(checkpoint, load_checkpoint(checkpoint), colour)  # a failure leaves the folder as it was
    staging = Path(tempfile.mkdtemp(prefix=".colour-", dir=checkpoint))
    staging.chmod(0o755)  # readable as the folder around it is (mkdtemp makes it 0700)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        shutil.copyfile(colour_run / name, staging / name)
        (staging / name).chmod(0o644)
    target = checkpoint / COLOUR_DIR
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    meta[COLOUR_DIR] = {"folder": COLOUR_DIR, "weights_sha256": colour.sha256}
    write_config(checkpoint, meta)
    return load_photo(checkpoint)


PROG = "python -m model.photo.pair"


def pair_command(argv: list[str] | None = None) -> int:
    from model.cli import Parser  # the command line's, not loading's: serving never imports it

    parser = Parser(prog=PROG, description="Pair a colour photo network with a photo checkpoint.")
    parser.add_argument("checkpoint", type=Path, help="the photo checkpoint folder (its gray network)")
    parser.add_argument("--colour", type=Path, required=True, help="a photo-color run's folder")
    args = parser.parse_args(argv)
    ckpt = pair(args.checkpoint, args.colour)
    print(f"{ckpt.path}: gray {ckpt.sha256[:12]}…, colour {colour_sha256(ckpt.meta)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """A checkpoint that cannot be paired is one line on stderr and exit code 2 (``model.cli``)."""
    from model.cli import run

    return run(PROG, pair_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
