"""The autoencoders' shapes follow their config, and a config they cannot follow is refused."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from model.config import ModelConfig
from model.networks import VAE, DenoisingAutoencoder, build_model


@pytest.mark.parametrize("kind", ["dae", "vae"])
def test_every_shape_follows_the_config(kind: str) -> None:
    cfg = ModelConfig(kind=kind, image_size=[16, 24], channels=3, hidden=[8, 16, 8],  # type: ignore[arg-type]
                      extra_convs=1, latent_dim=5, likelihood="bernoulli")
    model = build_model(cfg)
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        code = model.encode(x)  # type: ignore[operator]
        z = code if isinstance(model, DenoisingAutoencoder) else code.mode()
        assert z.shape == (2, 5)
        image = model.decode(z)  # type: ignore[operator]
        assert image.shape == x.shape and float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        assert model.denoise(x).shape == x.shape  # type: ignore[operator]
        if isinstance(model, VAE):
            assert model.sample(4).shape == (4, 3, 16, 24)


def test_the_vae_learns_its_gaussian_sigma_only_when_asked() -> None:
    fixed = ModelConfig(kind="vae", likelihood="gaussian", sigma=0.2)
    assert "log_sigma" not in dict(build_model(fixed).named_parameters())
    learned = build_model(dataclasses.replace(fixed, likelihood="gaussian-learned"))
    log_sigma = dict(learned.named_parameters())["log_sigma"]
    assert log_sigma.item() == pytest.approx(torch.tensor(0.2).log().item())


def test_a_size_the_stages_cannot_halve_and_an_unknown_kind_are_refused() -> None:
    with pytest.raises(ValueError, match=r"image size 28x20 must be divisible by 8 for hidden=\[8, 8, 8\]"):
        build_model(ModelConfig(image_size=[28, 20], hidden=[8, 8, 8]))
    with pytest.raises(ValueError, match="unknown model kind 'gan'"):
        build_model(ModelConfig(kind="gan"))  # type: ignore[arg-type]
