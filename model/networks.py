"""Convolutional autoencoders: a denoising autoencoder and a VAE.

Both are encoder -> latent vector -> decoder with no skip connection around the bottleneck, so
``encode`` and ``decode`` are meaningful on their own. Every shape derives from the config: each entry
of ``hidden`` is a stage that halves the resolution with a strided conv (plus ``extra_convs`` 3x3
convs); the decoder mirrors it with transposed convs.
Losses live in ``model.losses``, not in ``forward``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from model.config import ModelConfig
from model.distributions import DiagonalGaussian, PixelLikelihood
from model.kinds import kind_spec, resolve


def _bottleneck_hw(cfg: ModelConfig) -> tuple[int, int]:
    factor = 2 ** len(cfg.hidden)
    h, w = cfg.image_size
    if h % factor or w % factor:
        raise ValueError(f"image size {h}x{w} must be divisible by {factor} for hidden={cfg.hidden}")
    return h // factor, w // factor


class ConvEncoder(nn.Module):
    """Image -> feature vector of size ``out_features``; each ``hidden`` entry halves the size."""

    def __init__(self, cfg: ModelConfig, out_features: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = cfg.channels
        for c_out in cfg.hidden:
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
            for _ in range(cfg.extra_convs):
                layers += [nn.Conv2d(c_out, c_out, 3, padding=1), nn.SiLU()]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.Flatten())
        h, w = _bottleneck_hw(cfg)
        self.head = nn.Linear(cfg.hidden[-1] * h * w, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ConvDecoder(nn.Module):
    """Latent vector -> per-pixel logits of the image; the encoder's mirror image."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        h, w = _bottleneck_hw(cfg)
        self.shape = (cfg.hidden[-1], h, w)
        self.project = nn.Sequential(nn.Linear(cfg.latent_dim, cfg.hidden[-1] * h * w), nn.SiLU())
        layers: list[nn.Module] = []
        rev = list(reversed(cfg.hidden))
        for c_in, c_out in zip(rev, [*rev[1:], cfg.channels], strict=True):
            for _ in range(cfg.extra_convs):
                layers += [nn.Conv2d(c_in, c_in, 3, padding=1), nn.SiLU()]
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
        self.body = nn.Sequential(*layers[:-1])  # no activation after the last layer: logits

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(z).view(-1, *self.shape))


class DenoisingAutoencoder(nn.Module):
    """x (noisy) -> z -> x_hat in the value range; trained on noisy inputs against clean targets."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = ConvEncoder(cfg, cfg.latent_dim)
        self.decoder = ConvDecoder(cfg)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


class VAE(nn.Module):
    """Encoder with mean and log-variance heads, z = mu + sigma * eps, decoder.

    ``forward`` returns the decoder logits of a reparameterised draw and the posterior; the loss is
    assembled by ``model.losses.vae_loss``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = ConvEncoder(cfg, 2 * cfg.latent_dim)
        self.decoder = ConvDecoder(cfg)
        # log sigma of the Gaussian likelihood; a buffer when fixed, a parameter when learned
        log_sigma = torch.tensor(float(cfg.sigma)).log()
        if cfg.likelihood == "gaussian-learned":
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        mean, logvar = self.encoder(x).chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @property
    def likelihood(self) -> PixelLikelihood:
        """p(x|z) of the decoder's logits (with the current ``log_sigma``)."""
        return PixelLikelihood(self.cfg.likelihood, self.log_sigma)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's mean image in [0, 1]."""
        return self.likelihood.mean(self.decoder(z))

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, DiagonalGaussian]:
        posterior = self.encode(x)
        return self.decode_logits(posterior.sample(generator)), posterior

    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the posterior mean."""
        return self.decode(self.encode(x).mode())

    def sample(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        device = next(self.parameters()).device
        z = torch.randn(n, self.cfg.latent_dim, generator=generator, device=device) * temperature
        return self.decode(z)


def build_model(cfg: ModelConfig) -> nn.Module:
    """The network a config describes (weights freshly initialised): its kind's, in ``KINDS``."""
    network: Callable[[ModelConfig], nn.Module] = resolve(kind_spec(cfg.kind).network)
    return network(cfg)
