"""Named mechanisms M_j: small pure functions on image batches (N x C x H x W, values in [0, 1]).

Two registries: MECHANISMS (the paper's MNIST set) and FACE_MECHANISMS (the faces ground-truth
mode). Each entry takes the batch and a strength object (the params that set how strong the
mechanisms are: `Strength` for MNIST, `FaceStrength` for faces) and returns a new batch.
"""
from __future__ import annotations

import dataclasses as dc
from typing import Callable

import torch
import torch.nn.functional as F


@dc.dataclass(frozen=True)
class Strength:
    shift: int
    noise_std: float
    generator: torch.Generator


@dc.dataclass(frozen=True)
class FaceStrength:
    shift: int          # translation, pixels (translate: down and right; shift_*: one direction)
    cast: float         # colour cast: added to red, subtracted from blue (cool_cast: the reverse)
    brightness: float   # brightness_contrast: added after ...; brighten/darken: +/- its absolute value
    contrast: float     # ... scaling the deviation from mid-grey by this factor
    band: float         # occlusion band height, as a fraction of the image height (at the eyes)
    blur: float         # gaussian blur sigma, as a fraction of the image size


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


def colour_cast(x: torch.Tensor, amount: float) -> torch.Tensor:
    tint = torch.tensor([amount, 0.0, -amount], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x + tint).clamp(0.0, 1.0)


def brightness_contrast(x: torch.Tensor, brightness: float, contrast: float) -> torch.Tensor:
    return ((x - 0.5) * contrast + 0.5 + brightness).clamp(0.0, 1.0)


def occlusion_band(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """A black horizontal band over the eyes (centred at 40% of the height)."""
    h = x.shape[-2]
    rows = max(1, round(fraction * h))
    top = max(0, round(0.4 * h - rows / 2))
    out = x.clone()
    out[..., top: top + rows, :] = 0.0
    return out


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable gaussian blur (radius 3 sigma, reflect padding), per channel."""
    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    y = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


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


def brighten(x: torch.Tensor, amount: float) -> torch.Tensor:
    return (x + amount).clamp(0.0, 1.0)


FACE_MECHANISMS: dict[str, Callable[[torch.Tensor, FaceStrength], torch.Tensor]] = {
    # Identifiable pairs (the default): each inverse conflicts with its partner's, as MNIST's
    # opposite shifts do, so one expert cannot serve both.
    "shift_up": lambda x, s: translate(x, -s.shift, 0),
    "shift_down": lambda x, s: translate(x, s.shift, 0),
    "shift_left": lambda x, s: translate(x, 0, -s.shift),
    "shift_right": lambda x, s: translate(x, 0, s.shift),
    "warm_cast": lambda x, s: colour_cast(x, s.cast),
    "cool_cast": lambda x, s: colour_cast(x, -s.cast),
    "brighten": lambda x, s: brighten(x, abs(s.brightness)),
    "darken": lambda x, s: brighten(x, -abs(s.brightness)),
    # The first set (a documented variant): a flip of an aligned face is not identifiable, and
    # mechanisms whose inverses do not conflict get merged by one expert.
    "hflip": lambda x, s: x.flip(-1),
    "colour_cast": lambda x, s: colour_cast(x, s.cast),
    "brightness_contrast": lambda x, s: brightness_contrast(x, s.brightness, s.contrast),
    "occlusion": lambda x, s: occlusion_band(x, s.band),
    "blur": lambda x, s: gaussian_blur(x, s.blur * x.shape[-1]),
    "translate": lambda x, s: translate(x, s.shift, s.shift),
}


_FACE_INVERSES: dict[str, Callable[[torch.Tensor, FaceStrength], torch.Tensor]] = {
    "shift_up": FACE_MECHANISMS["shift_down"],
    "shift_down": FACE_MECHANISMS["shift_up"],
    "shift_left": FACE_MECHANISMS["shift_right"],
    "shift_right": FACE_MECHANISMS["shift_left"],
    "warm_cast": FACE_MECHANISMS["cool_cast"],
    "cool_cast": FACE_MECHANISMS["warm_cast"],
    "brighten": FACE_MECHANISMS["darken"],
    "darken": FACE_MECHANISMS["brighten"],
    "hflip": FACE_MECHANISMS["hflip"],
    "colour_cast": lambda x, s: colour_cast(x, -s.cast),
    "brightness_contrast": lambda x, s: ((x - 0.5 - s.brightness) / s.contrast + 0.5).clamp(0.0, 1.0),
    "translate": lambda x, s: translate(x, -s.shift, -s.shift),
}


def face_inverse(name: str, x: torch.Tensor, strength: FaceStrength) -> torch.Tensor | None:
    """The best any expert could do on mechanism `name`'s outputs: its exact inverse, which still
    cannot restore what the mechanism destroyed (a shifted-out border, clipped values). None where no
    inverse exists (occlusion, blur)."""
    inv = _FACE_INVERSES.get(name)
    return None if inv is None else inv(x, strength)


def apply(names: tuple[str, ...], x: torch.Tensor, mech_ids: torch.Tensor, strength) -> torch.Tensor:
    """Apply mechanism `names[mech_ids[i]]` to image i (from MECHANISMS or FACE_MECHANISMS)."""
    out = torch.empty_like(x)
    for j, name in enumerate(names):
        idx = (mech_ids == j).nonzero(as_tuple=True)[0]
        if len(idx):
            out[idx] = {**MECHANISMS, **FACE_MECHANISMS}[name](x[idx], strength)
    return out
