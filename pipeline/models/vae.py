"""Convolutional VAEs: the `vae` and `vae_local` expert architectures, and the β-VAE of the latent study.

Encoder: stride-2 3x3 convs (widths w, 2w, 4w, ...) while the side is above 8 px, then a linear
map to the Gaussian posterior's mean μ and log-variance logσ² (`latent_dim` each). Decoder: the
mirror image (linear, then one stride-2 4x4 transposed conv per level, the last to the image
channels) and a sigmoid. Transposed convs work at the lower resolution: ~2x faster on a CPU than
upsampling and a 3x3 conv at the higher one.
Reparameterisation: z = μ + exp(½·logσ²)·ε, ε ~ N(0, I) (σ multiplies ε; it is not added to it).

`LocalVAE` (arch `vae_local`): the paper's expert with a Gaussian latent at every pixel, no
downsampling: 2 convs 3x3 to μ and logσ² (`latent_dim` channels each), then 3 convs 3x3 to the
image and a sigmoid. Each output pixel sees a 13x13 patch, so a decoder cannot swap the digit for
another canonical-looking one, which the global latent's decoder does (reports/variants/mnist_vae.md).

As an expert, `forward` decodes the posterior mean (deterministic: the competition scores it and
the evaluation reads it), and `sample` decodes a reparameterised draw and returns its KL, for the
winners' loss. No normalisation layers: every output depends on its own input only.
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.models.layers import elu, elu_chain


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return mu + torch.exp(0.5 * logvar) * eps


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) || N(0, I)) per sample, summed over the latent dimensions (and pixels)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1)


def vae_loss(out: torch.Tensor, target: torch.Tensor, kl: torch.Tensor, beta: float) -> torch.Tensor:
    """Per sample: (squared error summed over pixels + β·KL) / pixels, i.e. the per-pixel MSE plus
    the KL spread over the pixels, so its scale matches the MSE of the other experts' pretraining."""
    pixels = target[0].numel()
    return ((out.float() - target).pow(2).flatten(1).sum(1) + beta * kl) / pixels


def levels(size: int) -> int:
    """Stride-2 levels: halve while the side stays even and above 8 (28 -> 7, 32 -> 8, 64 -> 8)."""
    n = 0
    while size > 8 and size % 2 == 0:
        size, n = size // 2, n + 1
    return n


class Gaussian(nn.Module):
    """What both VAEs share: `encode` -> (μ, logσ²) and `decode` -> image, defined by each."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The decoded posterior mean (deterministic)."""
        return self.decode(self.encode(x)[0])

    def sample(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(decoded reparameterised draw, KL per sample)."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterise(mu, logvar, torch.randn_like(mu))), kl_divergence(mu, logvar)


class VAE(Gaussian):
    def __init__(self, channels: int, width: int, size: int, latent_dim: int):
        super().__init__()
        n = levels(size)
        if n == 0:
            raise ValueError(f"a VAE needs an image side above 8 px that halves at least once, got {size}")
        widths = [channels] + [width * 2 ** i for i in range(n)]
        self.side, self.top = size // 2 ** n, widths[-1]
        self.down = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(widths, widths[1:]))
        flat = self.top * self.side ** 2
        self.posterior = nn.Linear(flat, 2 * latent_dim)
        self.expand = nn.Linear(latent_dim, flat)
        rev = widths[::-1]   # top ... width, channels
        self.up = nn.ModuleList(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1) for a, b in zip(rev, rev[1:]))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's last conv features, flattened (the posterior's input)."""
        return elu_chain(self.down, x).flatten(1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.posterior(self.features(x)).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = elu(self.expand(z)).view(-1, self.top, self.side, self.side)
        return torch.sigmoid(self.up[-1](elu_chain(self.up[:-1], h)))


class LocalVAE(Gaussian):
    def __init__(self, channels: int, width: int, latent_dim: int):
        super().__init__()
        self.enc = nn.ModuleList([nn.Conv2d(channels, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)])
        self.posterior = nn.Conv2d(width, 2 * latent_dim, 3, padding=1)
        self.dec = nn.ModuleList([nn.Conv2d(latent_dim, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)])
        self.out = nn.Conv2d(width, channels, 3, padding=1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.posterior(elu_chain(self.enc, x)).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(elu_chain(self.dec, z)))
