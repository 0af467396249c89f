"""The paper's discriminator D: 3x3 conv blocks (16, 32, 64) with 2x2 average pooling between
blocks, FC 1024 + ELU, FC 1. Returns logits (use BCE-with-logits).

`spectral_norm=True` (Miyato et al. 2018) divides every weight by its largest singular value
(one power iteration per training-mode forward), which bounds D's Lipschitz constant: a standard
remedy when D's loss swings and the experts chase a moving target."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Discriminator(nn.Module):
    def __init__(self, channels: int, image_size: int, widths: tuple[int, ...] = (16, 32, 64), hidden: int = 1024,
                 spectral_norm: bool = False):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        chans = (channels,) + tuple(widths)
        self.convs = nn.ModuleList(sn(nn.Conv2d(a, b, 3, padding=1)) for a, b in zip(chans, chans[1:]))
        side = image_size // 2 ** (len(widths) - 1)
        self.fc = sn(nn.Linear(widths[-1] * side * side, hidden))
        self.head = sn(nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            if i:
                x = F.avg_pool2d(x, 2)
            x = F.elu(conv(x))
        return self.head(F.elu(self.fc(x.flatten(1)))).squeeze(1)
