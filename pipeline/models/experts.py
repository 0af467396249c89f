"""Experts E_i and the bank that runs N' of them, in a per-expert or a batched form.

Expert (the paper's): 4 x [conv 3x3, BatchNorm, ELU] + conv 3x3 to the image channels + sigmoid.
Residual form (`residual=True`): E(x) = clamp(x + g(x), 0, 1), where g is the same stack without the
sigmoid and its last conv starts at zero, so every expert is exactly the identity at the start and
learns only the correction (the identity need not be relearned through a sigmoid).

BatchNorm uses batch statistics while the experts are pretrained to the identity, and is frozen
(running statistics, a fixed affine map) in the competitive phase. That makes every expert a
per-sample function, so (a) scoring all experts without a graph and recomputing only each
expert's winning samples with a graph is exact, and (b) the batched form can pack a different
set of samples into each expert's group.

Both forms read the same per-expert modules, so they share weights and optimiser state:
- per-expert: a Python loop of ordinary convolutions (fastest on a CPU, where FLOPs bound);
- batched: one grouped convolution per layer for all experts (fastest on a GPU, where kernel
  launches bound); the dispatched op count is flat in N'.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.layers import elu, finish, zero_init
from pipeline.models.unet import UNetExpert
from pipeline.models.vae import VAE, Gaussian, LocalVAE


def folded(convs: list[nn.Conv2d], norms: list[nn.BatchNorm2d]) -> tuple[torch.Tensor, torch.Tensor]:
    """Convs each followed by its frozen BatchNorm, as one (grouped) conv's (weight, bias), with
    the experts' channels concatenated in order. Differentiable; op count independent of len(convs)."""
    scale = _cat(norms, "weight") * torch.rsqrt(_cat(norms, "running_var") + norms[0].eps)
    bias = (_cat(convs, "bias") - _cat(norms, "running_mean")) * scale + _cat(norms, "bias")
    return _cat(convs, "weight") * scale.view(-1, 1, 1, 1), bias


def _cat(mods, name: str) -> torch.Tensor:
    tensors = [getattr(m, name) for m in mods]
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


class Expert(nn.Module):
    def __init__(self, channels: int, width: int, depth: int = 4, residual: bool = False):
        super().__init__()
        chans = [channels] + [width] * depth
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans, chans[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(depth))
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        self.residual = residual
        if residual:
            zero_init(self.out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for conv, norm in zip(self.convs, self.norms):
            if norm.training:
                h = elu(norm(conv(h)))
            else:  # frozen statistics: fold the norm into the conv (one op less per layer)
                h = elu(F.conv2d(h, *folded([conv], [norm]), padding=1))
        return finish(x, self.out(h), self.residual)


def make_expert(arch: str, channels: int, width: int, residual: bool = False, size: int = 0,
                latent_dim: int = 0) -> nn.Module:
    """`paper`: the paper's Expert; `unet`: the faces U-Net (pipeline/models/unet.py); `vae`: a
    convolutional VAE (pipeline/models/vae.py) for `size`-px images with `latent_dim` latents;
    `vae_local`: the paper's expert with `latent_dim` Gaussian latents at every pixel."""
    if arch == "paper":
        return Expert(channels, width, residual=residual)
    if arch == "unet":
        return UNetExpert(channels, width, residual=residual)
    if residual:
        raise ValueError(f"residual experts exist for arch paper and unet, not {arch!r}")
    if arch == "vae":
        return VAE(channels, width, size, latent_dim)
    if arch == "vae_local":
        return LocalVAE(channels, width, latent_dim)
    raise ValueError(f"unknown expert arch {arch!r}: paper, unet, vae or vae_local")


class ExpertBank(nn.Module):
    def __init__(self, num_experts: int, channels: int, width: int, batched: bool, arch: str,
                 residual: bool = False, size: int = 0, latent_dim: int = 0, beta: float = 1.0):
        super().__init__()
        if batched and arch != "paper":
            raise ValueError(f"the batched form exists for the paper's expert only, not {arch!r}")
        self.experts = nn.ModuleList(make_expert(arch, channels, width, residual, size, latent_dim)
                                     for _ in range(num_experts))
        self.batched, self.residual = batched, residual
        self.vae = isinstance(self.experts[0], Gaussian)   # decodes a draw and adds a KL term when it wins
        self.beta = beta   # VAE experts: the KL weight of their reconstruction + beta * KL term

    @property
    def n(self) -> int:
        return len(self.experts)

    def freeze_norm_stats(self) -> None:
        """Competitive phase: BatchNorm as a fixed per-channel affine map (see module doc)."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()

    def forward_all(self, x: torch.Tensor) -> torch.Tensor:
        """Every expert on every sample: (B, C, H, W) -> (B, N', C, H, W)."""
        if self.batched:
            b, c, h, w = x.shape
            return self._grouped(x.repeat(1, self.n, 1, 1)).view(b, self.n, c, h, w)
        return torch.stack([e(x) for e in self.experts], dim=1)

    def forward_assigned(self, x: torch.Tensor, owner: torch.Tensor):
        """Each sample through its own expert `owner[i]` only: (B, C, H, W) -> (B, C, H, W).

        Requires frozen norm statistics (per-sample experts); used for the winners' graph pass.
        VAE experts decode a reparameterised draw and return (outputs, KL per sample).
        """
        if self.vae:
            out, kl = torch.empty_like(x), x.new_empty(len(x))
            for i, e in enumerate(self.experts):
                idx = (owner == i).nonzero(as_tuple=True)[0]
                if len(idx):
                    y, k = e.sample(x[idx])
                    out, kl = out.index_put((idx,), y.to(out.dtype)), kl.index_put((idx,), k.float())
            return out, kl
        if not self.batched:
            parts = [((owner == i).nonzero(as_tuple=True)[0], e) for i, e in enumerate(self.experts)]
            ys = [(idx, e(x[idx])) for idx, e in parts if len(idx)]
            out = torch.empty_like(x, dtype=ys[0][1].dtype)   # bf16 under autocast
            for idx, y in ys:
                out = out.index_put((idx,), y)
            return out
        # Pack each expert's samples into its own channel group, padding groups to the largest.
        b, c, h, w = x.shape
        order = torch.argsort(owner, stable=True)
        counts = torch.bincount(owner, minlength=self.n)
        starts = torch.cumsum(counts, 0) - counts
        sorted_owner = owner[order]
        rank = torch.arange(b, device=x.device) - starts[sorted_owner]
        cap = int(counts.max())
        slots = x.new_zeros(cap, self.n, c, h, w)
        slots = slots.index_put((rank, sorted_owner), x[order])
        y = self._grouped(slots.view(cap, self.n * c, h, w)).view(cap, self.n, c, h, w)
        return torch.empty_like(x, dtype=y.dtype).index_put((order,), y[rank, sorted_owner])

    def _grouped(self, x: torch.Tensor) -> torch.Tensor:
        """All experts as grouped convolutions over a (B, N'*C, H, W) input."""
        ex, g, inp = self.experts, self.n, x
        for layer in range(len(ex[0].convs)):
            convs = [e.convs[layer] for e in ex]
            norms = [e.norms[layer] for e in ex]
            if norms[0].training:  # batch statistics per expert channel; running stats not tracked here
                x = F.conv2d(x, _cat(convs, "weight"), _cat(convs, "bias"), padding=1, groups=g)
                x = F.batch_norm(x, None, None, _cat(norms, "weight"), _cat(norms, "bias"), True, 0.0,
                                 norms[0].eps)
            else:
                x = F.conv2d(x, *folded(convs, norms), padding=1, groups=g)
            x = elu(x)
        outs = [e.out for e in ex]
        return finish(inp, F.conv2d(x, _cat(outs, "weight"), _cat(outs, "bias"), padding=1, groups=g), self.residual)

    def expert_params(self, i: int) -> list[nn.Parameter]:
        return list(self.experts[i].parameters())


def use_batched(setting: str, device, arch: str) -> bool:
    """`auto`: the batched form on accelerators (launch-bound), the per-expert loop on CPU
    (FLOP-bound; grouped convolutions measured ~0.6x the loop there, see bench/experts.py).
    Only the paper's expert has a batched form."""
    return device.type != "cpu" and arch == "paper" if setting == "auto" else setting == "true"
