"""Likelihood scores of a VAE at serving time: the importance-weighted NLL and the negative ELBO."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from model.distributions import standard_normal_log_prob
from model.networks import VAE


@torch.no_grad()
def iwae_nll(
    model: VAE,
    x: torch.Tensor,
    k: int,
    chunk: int = 100,
    generator: torch.Generator | None = None,
    check: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance-weighted estimate of -log p(x) with ``k`` samples, and the negative ELBO.

    log p(x) ~= logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k, z_i ~ q(z|x).
    Returns two tensors of shape (batch,) in nats. ``check`` is called before each chunk of
    ``chunk`` samples; whatever it raises propagates unchanged (a deadline, a gone client).
    """
    posterior = model.encode(x)
    weights = []
    elbo_terms = []
    for start in range(0, k, chunk):
        if check is not None:
            check()
        n = min(chunk, k - start)
        z = posterior.sample_n(n, generator)  # (n, B, D)
        logits = model.decode_logits(z.reshape(-1, z.shape[-1])).view(n, *x.shape)
        log_w = (
            model.likelihood.log_prob(x.unsqueeze(0), logits)
            + standard_normal_log_prob(z)
            - posterior.log_prob(z)
        )
        weights.append(log_w)
        elbo_terms.append(log_w.sum(0))
    log_w_all = torch.cat(weights, dim=0)
    nll = -(torch.logsumexp(log_w_all, dim=0) - math.log(k))
    neg_elbo = -(torch.stack(elbo_terms).sum(0) / k)
    return nll, neg_elbo
