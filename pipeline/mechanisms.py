"""Named mechanisms M_j: small pure functions on image batches (N x C x H x W, values in [0, 1]).

Each registry entry takes the batch and a `Strength` (the params that set how strong the
mechanisms are, plus the random generator for stochastic ones) and returns a new batch.
"""
from __future__ import annotations

import dataclasses as dc
from typing import Callable

import torch


@dc.dataclass(frozen=True)
class Strength:
    shift: int
    noise_std: float
    generator: torch.Generator


def translate(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift content by (dy, dx) pixels (positive = down/right); vacated pixels are 0."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    src_y, dst_y = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
    src_x, dst_x = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
    out[..., dst_y, dst_x] = x[..., src_y, src_x]
    return out


def invert(x: torch.Tensor) -> torch.Tensor:
    return 1.0 - x


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) * std
    return (x + noise).clamp_(0.0, 1.0)


def _shift(dy: int, dx: int) -> Callable[[torch.Tensor, Strength], torch.Tensor]:
    return lambda x, s: translate(x, dy * s.shift, dx * s.shift)


MECHANISMS: dict[str, Callable[[torch.Tensor, Strength], torch.Tensor]] = {
    "up": _shift(-1, 0),
    "down": _shift(1, 0),
    "left": _shift(0, -1),
    "right": _shift(0, 1),
    "up_left": _shift(-1, -1),
    "up_right": _shift(-1, 1),
    "down_left": _shift(1, -1),
    "down_right": _shift(1, 1),
    "invert": lambda x, s: invert(x),
    "noise": lambda x, s: gaussian_noise(x, s.noise_std, s.generator),
}


def apply(names: tuple[str, ...], x: torch.Tensor, mech_ids: torch.Tensor, strength: Strength) -> torch.Tensor:
    """Apply mechanism `names[mech_ids[i]]` to image i."""
    out = torch.empty_like(x)
    for j, name in enumerate(names):
        idx = (mech_ids == j).nonzero(as_tuple=True)[0]
        if len(idx):
            out[idx] = MECHANISMS[name](x[idx], strength)
    return out
