"""Named training recipes: each is the complete recipe of a shipped checkpoint or of one of its
runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from model.cli import UsageError
from model.config import ModelConfig, NoiseConfig, RunConfig, TrainConfig
from model.kinds import KINDS
from model.photo.preset import PHOTO_PRESETS


def mnist_dae() -> RunConfig:
    """One blind denoiser for Gaussian noise sigma in [0, 0.6] on MNIST digits."""
    return RunConfig(
        model=ModelConfig(
            kind="dae", image_size=[28, 28], channels=1, hidden=[32, 64], extra_convs=1, latent_dim=128,
            likelihood="mse",
        ),
        noise=NoiseConfig(kind="gaussian", sigma_min=0.0, sigma_max=0.6, clip=True),
        train=TrainConfig(
            preset="mnist-dae", dataset="mnist", epochs=15, batch_size=128, lr=2e-3, lr_min=2e-5,
        ),
    )


def mnist_vae() -> RunConfig:
    """A Bernoulli VAE on dynamically binarised MNIST, one stochastic layer of 64 units.

    The widest of three recipes trained side by side on one GPU (``scripts/train-gpu.sh``), chosen
    by validation -ELBO: 87.9 nats against 89.1 for [64, 128] with one extra conv and 94.2 for
    [32, 64] (latent 32), each after the epochs that fit 280 s.
    """
    return RunConfig(
        model=ModelConfig(
            kind="vae", image_size=[28, 28], channels=1, hidden=[64, 128], extra_convs=2,
            latent_dim=64, likelihood="bernoulli",
        ),
        noise=NoiseConfig(kind="none"),
        train=TrainConfig(
            preset="mnist-vae", dataset="mnist", epochs=52, batch_size=128, lr=1e-3, lr_min=1e-5,
            beta=1.0, kl_warmup_steps=2000, binarize=True,
            amp=False,  # exact fp32 likelihoods; a net this small gains nothing from bf16
        ),
    )


PRESETS: dict[str, Callable[[], RunConfig]] = {
    "mnist-dae": mnist_dae, "mnist-vae": mnist_vae, **PHOTO_PRESETS,
}


def refuse_other_kinds_flags(args: argparse.Namespace) -> None:
    """``UsageError`` naming the first flag given that ``args.preset``'s kind does not read (of the
    flags only some kinds read, ``KindSpec.train_flags``): it would be recorded in the checkpoint's
    command and change nothing."""
    kind = get_preset(args.preset).model.kind
    for flag in dict.fromkeys(flag for spec in KINDS.values() for flag in spec.train_flags):
        if flag in KINDS[kind].train_flags or getattr(args, flag[2:].replace("-", "_")) is None:
            continue
        takers = [other for other, spec in KINDS.items() if flag in spec.train_flags]
        raise UsageError(f"{flag} does not apply to preset {args.preset} (a {kind} model); "
                         f"it is for {' and '.join(takers)} presets")


def get_preset(name: str) -> RunConfig:
    """The named recipe; ``UsageError`` naming the known ones for any other name."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return PRESETS[name]()
