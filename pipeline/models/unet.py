"""A small U-Net expert: an image-to-image map with a receptive field covering the whole image.

Why: the paper's expert (five 3x3 convs at full resolution) sees only 11x11 input pixels per
output pixel. That is enough for local mechanisms (noise, contrast, small shifts), but it cannot
undo a horizontal flip (output column j needs input column W-1-j), a translation larger than a
few pixels, or fill an occlusion band wider than ~10 pixels from its surroundings.

This U-Net has two stride-2 levels (widths width, 2*width, 4*width) and a bottleneck of 3x3
convs with dilations 1, 2, 4, 8 at 1/4 resolution, then two nearest-upsample + conv levels with
skip connections by concatenation. Every output pixel depends on input pixels 71-75 px away
in each direction (a 147x147 field), so even a corner pixel sees the whole image at 32x32 and at
64x64 (tested in tests/test_unet.py).

Every layer acts per sample (no BatchNorm, no normalisation at all): the training code scores
all samples without a graph and recomputes only selected samples with a graph, which must give
the same outputs. Works with channels_last inputs (convs, nearest upsampling and cat keep it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.layers import elu, elu_chain, finish, zero_init

BOTTLENECK_DILATIONS = (1, 2, 4, 8)  # part of the architecture, not a tunable


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 conv that keeps the size (stride 1) or halves it (stride 2)."""
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation)


class UNetExpert(nn.Module):
    def __init__(self, channels: int, width: int, residual: bool = False):
        super().__init__()
        self.residual = residual
        w1, w2, w3 = width, 2 * width, 4 * width
        self.enc1 = nn.ModuleList([_conv(channels, w1), _conv(w1, w1)])             # H
        self.enc2 = nn.ModuleList([_conv(w1, w2, stride=2), _conv(w2, w2)])         # H/2
        self.bottom = nn.ModuleList([_conv(w2, w3, stride=2)] +                     # H/4
                                    [_conv(w3, w3, dilation=d) for d in BOTTLENECK_DILATIONS])
        self.up2 = _conv(w3, w2)                                                    # H/2
        self.dec2 = _conv(2 * w2, w2)
        self.up1 = _conv(w2, w1)                                                    # H
        self.dec1 = _conv(2 * w1, w1)
        self.out = _conv(w1, channels)
        if residual:
            zero_init(self.out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, channels, H, W) in [0, 1] -> same shape in (0, 1); H and W divisible by 4."""
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(f"UNetExpert needs H and W divisible by 4, got {tuple(x.shape[-2:])}")
        s1 = elu_chain(self.enc1, x)
        s2 = elu_chain(self.enc2, s1)
        h = elu_chain(self.bottom, s2)
        h = elu(self.up2(F.interpolate(h, scale_factor=2.0, mode="nearest")))
        h = elu(self.dec2(torch.cat([h, s2], dim=1)))
        h = elu(self.up1(F.interpolate(h, scale_factor=2.0, mode="nearest")))
        h = elu(self.dec1(torch.cat([h, s1], dim=1)))
        return finish(x, self.out(h), self.residual)
