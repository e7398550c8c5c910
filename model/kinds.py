"""Every kind of model, each described in one place: ``KINDS``.

A new kind is one entry here (and its name in ``model.config.Kind``). The entry is plain data, with
no torch and no training or evaluation code: serving imports it (through ``model.config`` and
``model.networks``), so the network, the training task and the evaluator are named by
``"module:attribute"`` paths and imported by ``resolve`` only when asked for. Serving asks for the
network alone; the task and the evaluator are imported by ``model.train`` and ``model.evaluate``.
"""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NoiseScale:
    """The scale a kind of checkpoint reads its noise levels (``--sigmas``) on, and what is plausible
    there: a level on the other scale (0.1 where 25 is meant, or the reverse) gives figures that
    look like results but measure something else, so ``model.evaluate`` refuses it, saying what it
    would be here."""

    name: str  # the scale, as the messages name it
    low: float
    high: float
    examples: str
    flags: tuple[str, ...]  # the flags of ``model.evaluate`` that take noise levels
    other: tuple[str, float]  # the other scale: its name, and the factor from it to this one


@dataclass(frozen=True)
class KindSpec:
    """What one kind of model is, from the network it builds to how it is trained and evaluated."""

    network: str  # the nn.Module class, built from a ``ModelConfig``
    has_latent: bool  # an encoder to a latent vector of ``latent_dim`` (encode/decode/sample)
    task: str  # the training task's factory, a ``model.tasks.TaskFactory``
    evaluate: str  # ``python -m model.evaluate`` on a checkpoint: ``(args, command) -> exit code``
    noise_scale: NoiseScale | None  # None: evaluated without added noise, it takes no level
    # the flags of ``model.train`` that only some kinds read: those this kind reads (the others refuse
    # them, as they would be recorded in the checkpoint's command and change nothing)
    train_flags: tuple[str, ...]
    # the same for ``model.evaluate`` (by dest): given to another kind, BM3D would run after
    # --no-bm3d on a DAE, say, and the flag be recorded in its command
    evaluate_flags: tuple[str, ...]


KINDS: dict[str, KindSpec] = {
    "dae": KindSpec(
        network="model.networks:DenoisingAutoencoder",
        has_latent=True,
        task="model.tasks:DAETask.from_dirs",
        evaluate="model.evaluate_autoencoder:evaluate_dae_checkpoint",
        noise_scale=NoiseScale("[0, 1]", 0.0, 1.0, "0.1 0.3 0.5", ("--sigmas",), ("0-255", 1 / 255)),
        train_flags=("--extra-convs", "--latent-dim"),
        evaluate_flags=("bm3d_limit",),
    ),
    "vae": KindSpec(
        network="model.networks:VAE",
        has_latent=True,
        task="model.tasks:VAETask.from_dirs",
        evaluate="model.evaluate_autoencoder:evaluate_vae_checkpoint",
        noise_scale=None,
        train_flags=("--extra-convs", "--latent-dim"),
        evaluate_flags=("k", "k_big", "k_big_images"),
    ),
    "photo": KindSpec(
        network="model.photo.network:PhotoDenoiser",
        has_latent=False,
        task="model.photo.task:PhotoTask.from_dirs",
        evaluate="model.photo.evaluate:evaluate_photo",
        noise_scale=NoiseScale("0-255", 1.0, 255.0, "15 25 50", ("--sigmas", "--color-sigmas"),
                               ("[0, 1]", 255.0)),
        train_flags=("--patches-per-epoch", "--sigma-weight-floor"),
        evaluate_flags=("bm3d_limit", "color_data_dir", "protocols", "bm3d", "known_sigma",
                        "bm3d_workers", "bm3d_cache", "speed_size"),
    ),
}


def kind_spec(kind: str) -> KindSpec:
    """The entry of ``kind``; ``ValueError`` naming the known kinds for any other."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r} (known: {', '.join(KINDS)})")
    return KINDS[kind]


def resolve(path: str) -> Any:
    """The object a ``"module:attribute"`` path of ``KINDS`` names, its module imported now."""
    return pkgutil.resolve_name(path)
