"""Small building blocks shared by the expert architectures (experts.py, unet.py, vae.py)."""
from __future__ import annotations

import torch
from torch import nn


class _ELUFromOutput(torch.autograd.Function):
    """ELU whose backward uses its output only: dy/dx = 1 if y > 0 else y + 1."""

    @staticmethod
    def forward(ctx, x):
        y = x.clamp(max=0).exp_().sub_(1).add_(x.relu())
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * torch.where(y > 0, 1.0, y + 1)


def elu(x: torch.Tensor) -> torch.Tensor:
    """ELU as relu(x) + exp(min(x, 0)) - 1: ~2x faster than F.elu on CPU (whose expm1 is slow);
    in place when no graph is built."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _ELUFromOutput.apply(x)
    neg = x.clamp(max=0).exp_().sub_(1)
    return x.relu_().add_(neg)


def elu_chain(convs: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """`x` through each conv in turn, each followed by an ELU."""
    for conv in convs:
        x = elu(conv(x))
    return x


def finish(x: torch.Tensor, y: torch.Tensor, residual: bool) -> torch.Tensor:
    """An expert's last step from its input `x` and last conv's output `y`: sigmoid(y), or the
    residual form clamp(x + y, 0, 1)."""
    return (x + y).clamp(0.0, 1.0) if residual else torch.sigmoid(y)


def zero_init(conv: nn.Conv2d) -> None:
    """Residual experts: the correction starts at exactly zero."""
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
