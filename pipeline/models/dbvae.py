"""The debias study's network (pipeline/debias.py): one backbone for every arm.

The encoder of the VAE in vae.py (stride-2 3x3 convs) feeds two heads: a linear gender logit and
the Gaussian posterior (μ, logσ²). The decoder is vae.py's. ERM and group reweighting train the
logit only (the latent head and the decoder get no gradient); DB-VAE (Amini et al. 2019) also
trains reconstruction + KL through the latent, and reads μ to resample its training faces.
Built under one seed, every arm starts from the same weights.
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.models.vae import VAE, kl_divergence, reparameterise


class DebiasNet(nn.Module):
    def __init__(self, size: int, width: int, latent_dim: int, channels: int = 3):
        super().__init__()
        self.vae = VAE(channels, width, size, latent_dim)
        self.logit = nn.Linear(self.vae.posterior.in_features, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(gender logit (N,), μ, logσ²)."""
        h = self.vae.features(x)
        mu, logvar = self.vae.posterior(h).chunk(2, dim=1)
        return self.logit(h).squeeze(1), mu, logvar

    def reconstruct(self, mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(decoded reparameterised draw, KL per sample)."""
        return self.vae.decode(reparameterise(mu, logvar, eps)), kl_divergence(mu, logvar)
