"""psnr, ssim and mean_pairwise_distance on (B, C, H, W) tensors in [0, 1]."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.imagemetrics import mean_pairwise_distance, psnr, ssim


def images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    """Smooth random colour images (8x8 noise upsampled), in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def test_psnr_of_identical_images_is_the_cap():
    x = images(3, 0)
    assert torch.equal(psnr(x, x), torch.full((3,), 100.0))


def test_psnr_of_a_constant_offset():
    x = images(2, 0) * 0.8
    assert torch.allclose(psnr(x, x + 0.1), torch.full((2,), 20.0), atol=1e-4)     # 10 log10(1/0.01)
    assert torch.allclose(psnr(x, x + 0.01), torch.full((2,), 40.0), atol=1e-3)


def test_psnr_is_per_sample():
    x = images(2, 0) * 0.8
    y = x.clone()
    y[1] += 0.1
    out = psnr(x, y)
    assert out[0] == 100.0 and abs(out[1].item() - 20.0) < 1e-4


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        psnr(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 15))
    with pytest.raises(ValueError):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))     # smaller than the window


def test_ssim_of_identical_images_is_one():
    x = images(4, 0)
    assert torch.allclose(ssim(x, x), torch.ones(4), atol=1e-4)


def test_ssim_of_constant_images_has_the_closed_form():
    """No variance: SSIM reduces to the luminance term (2ab + C1) / (a^2 + b^2 + C1)."""
    a, b, c1 = 0.3, 0.6, 0.01 ** 2
    out = ssim(torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b))
    assert out.item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-6)


def test_ssim_decreases_with_noise():
    x = images(2, 0)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    scores = [ssim(x, (x + s * noise).clamp(0, 1)) for s in (0.02, 0.05, 0.1, 0.3)]
    for hi, lo in zip(scores, scores[1:]):
        assert (lo < hi).all()
    assert (scores[-1] < 0.5).all()


def test_ssim_of_inverted_contrast_is_negative():
    x = images(2, 0)
    assert (ssim(x, 1 - x) < 0).all()


def test_ssim_follows_wang_et_al_on_a_case_worked_by_hand():
    """Two constant-free images whose SSIM map is the same everywhere: x = a + d*s and y = a + e*s
    with s a +-1 checkerboard, on a window where the gaussian weights average s to ~0 and s^2 to 1,
    so mu = a, sigma_x = |d|, sigma_y = |e|, cov = d*e. Checked against the formula at the centre."""
    n, a, d, e = 64, 0.5, 0.2, 0.1
    s = torch.tensor([[(-1.0) ** (i + j) for j in range(n)] for i in range(n)], dtype=torch.float64)
    x, y = (a + d * s).expand(1, 1, n, n), (a + e * s).expand(1, 1, n, n)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    expected = ((2 * a * a + c1) * (2 * d * e + c2)) / ((2 * a * a + c1) * (d * d + e * e + c2))
    assert ssim(x, y).item() == pytest.approx(expected, abs=2e-3)


def test_ssim_is_symmetric_and_per_sample():
    x, y = images(3, 0), images(3, 1)
    s = ssim(x, y)
    assert torch.allclose(s, ssim(y, x), atol=1e-6)
    assert torch.allclose(ssim(x[1:2], y[1:2]), s[1:2], atol=1e-6)


def test_mean_pairwise_distance_of_identical_copies_is_zero():
    x = images(1, 0).expand(40, -1, -1, -1)
    assert mean_pairwise_distance(x) == 0.0


def test_mean_pairwise_distance_known_values():
    two = torch.zeros(2, 1, 2, 2)
    two[1] = 1.0                                        # distance sqrt(4) = 2
    assert mean_pairwise_distance(two) == pytest.approx(2.0)
    three = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]]).view(3, 1, 1, 2)
    assert mean_pairwise_distance(three) == pytest.approx((5 + 10 + 5) / 3)


def test_mean_pairwise_distance_needs_two_samples():
    with pytest.raises(ValueError):
        mean_pairwise_distance(torch.rand(1, 3, 4, 4))
