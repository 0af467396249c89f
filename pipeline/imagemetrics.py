"""Image-quality metrics on (B, C, H, W) tensors with values in [0, 1] (data range 1).

- psnr: per-sample peak signal-to-noise ratio in dB, capped at 100 dB (MSE <= 1e-10);
- ssim: per-sample mean SSIM (Wang et al. 2004);
- mean_pairwise_distance: mean L2 distance between distinct samples, to detect an expert that
  collapsed to one output (e.g. the same face for every input).

Computed in float64 (these are evaluation metrics on modest batches); results in the input dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PSNR_CAP_DB = 100.0


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"expected two (B, C, H, W) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR in dB for data range 1: 10 log10(1 / MSE), at most 100 dB. -> (B,)"""
    _check_pair(a, b)
    mse = (a.double() - b.double()).square().flatten(1).mean(1)
    min_mse = 10.0 ** (-PSNR_CAP_DB / 10)
    return (-10.0 * torch.log10(mse.clamp_min(min_mse))).to(a.dtype)


def gaussian_window(window: int, sigma: float) -> torch.Tensor:
    """Normalised 1-D gaussian of `window` taps (float64)."""
    t = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-t.square() / (2 * sigma ** 2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-sample mean SSIM (Wang et al. 2004) for data range 1. -> (B,)

    Local statistics use a gaussian window (11 taps, sigma 1.5: the standard constants of Wang
    et al.'s definition, hence the defaults), population (not sample) covariance, C1 = 0.01^2 and
    C2 = 0.03^2. The SSIM map is computed by 'valid' convolution (no padding: only the
    (H - window + 1) x (W - window + 1) positions where the whole window fits), averaged per
    channel, then over channels. This equals skimage's structural_similarity(
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=0),
    which pads by reflection but then crops the border it affected before averaging.
    """
    _check_pair(a, b)
    _, c, h, w = a.shape
    if h < window or w < window:
        raise ValueError(f"images of {h}x{w} are smaller than the {window}x{window} SSIM window")
    c1, c2, dtype = 0.01 ** 2, 0.03 ** 2, a.dtype
    a, b = a.double(), b.double()
    g = gaussian_window(window, sigma).to(a.device)
    kernel = torch.outer(g, g).expand(5 * c, 1, window, window)
    stats = F.conv2d(torch.cat([a, b, a * a, b * b, a * b], dim=1), kernel, groups=5 * c)
    mu_a, mu_b, aa, bb, ab = stats.split(c, dim=1)
    var_a, var_b, cov = aa - mu_a.square(), bb - mu_b.square(), ab - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
         / ((mu_a.square() + mu_b.square() + c1) * (var_a + var_b + c2)))
    return s.mean(dim=(2, 3)).mean(dim=1).to(dtype)


def mean_pairwise_distance(x: torch.Tensor) -> float:
    """Mean Euclidean distance between the flattened samples of x over all pairs i != j.

    Near 0 when a model maps every input to (almost) the same output. Uses the exact pairwise
    difference (not the matmul expansion, whose rounding leaves nonzero distances
    between identical rows).
    """
    if len(x) < 2:
        raise ValueError(f"mean_pairwise_distance needs at least 2 samples, got {len(x)}")
    flat = x.detach().flatten(1).double()
    d = torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist")
    return float(d.sum() / (len(x) * (len(x) - 1)))
