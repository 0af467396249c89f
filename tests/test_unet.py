"""UNetExpert: shapes, range, per-sample outputs, receptive field and that it can learn.

Thresholds were measured single-threaded on seeds 0-2 (width 8, smooth 3x32x32 images):
- identity, 150 Adam steps at lr 1e-3: MSE 0.040-0.042 -> 0.0026-0.0035 (ratio <= 0.09);
- horizontal flip, 200 steps at lr 2e-3 on 32 images: MSE -> 0.007-0.010, against 0.076 for
  the identity map and 0.040 for the constant (mean) predictor. The paper's 5-conv expert
  (width 32) stays at 0.033-0.035 on the same task.
"""
import pytest
import torch
import torch.nn.functional as F

from pipeline.models.unet import UNetExpert

WIDTH = 8


def smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    """Random 8x8 colour images upsampled bilinearly to size x size, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def make(seed: int = 0) -> UNetExpert:
    torch.manual_seed(seed)
    return UNetExpert(3, WIDTH)


def fit(model, x, target, steps: int, lr: float, batch: int, seed: int) -> float:
    """Adam on the MSE to `target`; returns the final MSE over all of x."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        loss = F.mse_loss(model(x[idx]), target[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return F.mse_loss(model(x), target).item()


@pytest.mark.parametrize("size", [32, 64])
def test_shape_and_range(size):
    x = torch.rand(4, 3, size, size)
    with torch.no_grad():
        y = make()(x)
    assert y.shape == x.shape
    assert y.min() > 0 and y.max() < 1


def test_rejects_size_not_divisible_by_4():
    with pytest.raises(ValueError):
        make()(torch.rand(1, 3, 30, 32))


@pytest.mark.parametrize("grad", [False, True])
def test_sample_alone_equals_sample_in_batch(grad):
    model, x = make(), torch.rand(8, 3, 32, 32)
    with torch.set_grad_enabled(grad):
        batch = model(x)
        for i in (0, 5):
            assert torch.allclose(model(x[i:i + 1])[0], batch[i], atol=1e-5)
        assert torch.allclose(model(x[[5, 2]]), batch[[5, 2]], atol=1e-5)


def test_channels_last_matches_contiguous():
    model, x = make(), torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        y = model(x.to(memory_format=torch.channels_last))
    assert torch.allclose(y, ref, atol=1e-5)


def test_gradients_reach_every_parameter():
    model = make()
    model(torch.rand(2, 3, 32, 32)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("size", [32, 64])
def test_receptive_field_covers_the_whole_image(size):
    """A corner output pixel depends on every input pixel, including the opposite corner."""
    x = torch.rand(1, 3, size, size, requires_grad=True)
    make()(x)[0, :, 0, 0].sum().backward()
    assert (x.grad[0].abs().sum(0) > 0).all()


def test_learns_the_identity():
    x = smooth_images(256, 32, seed=0)
    model = make()
    with torch.no_grad():
        initial = F.mse_loss(model(x), x).item()
    final = fit(model, x, x, steps=150, lr=1e-3, batch=16, seed=0)
    assert final < 0.2 * initial, (initial, final)


def test_learns_a_horizontal_flip():
    x = smooth_images(32, 32, seed=1)
    target = x.flip(-1)
    identity_error = F.mse_loss(x, target).item()     # ~0.076
    mean_error = F.mse_loss(target.mean(0, keepdim=True).expand_as(target), target).item()
    final = fit(make(1), x, target, steps=200, lr=2e-3, batch=16, seed=1)
    assert final < 0.25 * identity_error and final < 0.5 * mean_error, (final, identity_error, mean_error)
