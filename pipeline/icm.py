"""Competitive training of independent mechanisms, on tensors and modules only.

One step (`icm_step`):
1. every expert maps the transformed batch, without a graph;
2. D scores all expert outputs and the canonical batch in one pass, with a graph for D only;
   the same logits are the experts' scores and D's BCE loss (exact: D is unchanged until step 3);
3. D is updated (canonical -> 1, every expert output -> 0);
4. each sample gets a winner (argmax of D's score, or capacity-limited greedy);
5. each winning sample is run again, with a graph, through its own expert only, and the
   winners are updated to raise log D(E(x)); experts that won nothing get no gradient and
   are skipped by the optimiser.
"""
from __future__ import annotations

import dataclasses as dc
import math

import torch
import torch.nn.functional as F

from pipeline.distributed import Parallel
from pipeline.models.discriminator import Discriminator
from pipeline.models.experts import ExpertBank, make_expert


def assign_argmax(scores: torch.Tensor) -> torch.Tensor:
    """The paper's rule: each sample goes to the expert D scores highest. scores: (B, N')."""
    return scores.argmax(dim=1)


def capacity(batch: int, num_experts: int, factor: float) -> int:
    return max(1, math.ceil(factor * batch / num_experts))


def assign_capacity(scores: torch.Tensor, cap: int) -> torch.Tensor:
    """Greedy by score, each expert taking at most `cap` samples; a full expert passes the sample
    on to the sample's next-best expert (MoE-style load balancing)."""
    b, n = scores.shape
    if cap * n < b:
        raise ValueError(f"capacity {cap} x {n} experts cannot hold {b} samples")
    owner = [-1] * b
    load = [0] * n
    left = b
    for flat in torch.argsort(scores.flatten(), descending=True, stable=True).tolist():
        i, j = divmod(flat, n)
        if owner[i] < 0 and load[j] < cap:
            owner[i], load[j], left = j, load[j] + 1, left - 1
            if not left:
                break
    return torch.tensor(owner, device=scores.device)


@dc.dataclass
class StepStats:
    d_loss: float
    wins: list[int]          # samples won per expert
    loss: list[float]        # per expert: mean -log D(E(x)) over its won samples (nan if none)
    score: list[float]       # per expert: mean D(E(x)) (probability) over its won samples (nan if none)
    preferred: list[int]     # per expert: samples it scores highest on (its wins under plain argmax)


def icm_step(bank: ExpertBank, disc: Discriminator, opt_e: torch.optim.Optimizer,
             opt_d: torch.optim.Optimizer, x_canon: torch.Tensor, x_trans: torch.Tensor,
             assignment: str, cap: int, identity_weight: float, autocast: torch.dtype | None,
             par: Parallel) -> StepStats:
    """`identity_weight`: adds identity_weight * mean |E(x) - x| to each winner's loss (0 = the paper's
    loss). `autocast`: run the forward passes under autocast to this dtype (e.g. bf16 on CUDA); None = off.
    `par`: the data-parallel group; x_canon and x_trans are this rank's slices of the global batch,
    `cap` is for the global batch, and the returned stats are global (see pipeline/distributed.py)."""
    b, n = x_trans.shape[0], bank.n
    amp = lambda: torch.autocast(x_trans.device.type, dtype=autocast, enabled=autocast is not None)  # noqa: E731
    with torch.no_grad(), amp():
        outs = bank.forward_all(x_trans)                        # (B, N', C, H, W)
    with amp():
        logits = par.disc(torch.cat([x_canon, outs.flatten(0, 1)])).float()
    real, fake = logits[: x_canon.shape[0]], logits[x_canon.shape[0]:]
    d_loss = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
              + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()

    scores = par.gather(fake.detach().view(b, n))               # global (B_all, N')
    owner_all = assign_argmax(scores) if assignment == "argmax" else assign_capacity(scores, cap)
    owner = owner_all[par.shard(len(owner_all))]
    with amp():
        y = par.assigned(x_trans, owner)
        per_sample = F.softplus(-disc(y).float())                # -log D(E_owner(x))
    opt_e.zero_grad(set_to_none=True)
    params = [p for p in bank.parameters() if p.requires_grad]
    total = per_sample.sum()
    if identity_weight:
        total = total + identity_weight * (y.float() - x_trans).abs().flatten(1).mean(1).sum()
    torch.autograd.backward(total / b, inputs=params)
    wins = torch.bincount(owner_all, minlength=n)
    for i in (wins == 0).nonzero(as_tuple=True)[0].tolist():    # losers (on every rank): no update at all
        for p in bank.expert_params(i):
            p.grad = None
    opt_e.step()

    with torch.no_grad():
        owner_all, per_all, w = owner_all.cpu(), par.gather(per_sample.detach()).cpu(), wins.clamp(min=1).float().cpu()
        loss = torch.zeros(n).index_add_(0, owner_all, per_all) / w
        prob = torch.zeros(n).index_add_(0, owner_all, torch.exp(-per_all)) / w
        empty = (wins == 0).cpu()
        loss[empty], prob[empty] = float("nan"), float("nan")
    preferred = torch.bincount(scores.argmax(1), minlength=n)
    return StepStats(par.mean(d_loss.item(), x_trans.device), wins.tolist(), loss.tolist(), prob.tolist(),
                     preferred.tolist())


@torch.no_grad()
def winners(bank: ExpertBank, disc: Discriminator, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation: argmax winner per sample and its output, in chunks. Returns (owner, output)."""
    owners, outputs = [], []
    for chunk in x.split(batch_size):
        outs = bank.forward_all(chunk)
        scores = disc(outs.flatten(0, 1)).view(chunk.shape[0], bank.n)
        owner = scores.argmax(1)
        owners.append(owner)
        outputs.append(outs[torch.arange(chunk.shape[0], device=x.device), owner])
    return torch.cat(owners), torch.cat(outputs)


def pretrain_identity(experts: list[torch.nn.Module], x: torch.Tensor, lr: float, batch_size: int,
                      threshold: float, max_iterations: int, generator: torch.Generator,
                      log=None) -> int:
    """Train each module with MSE to reproduce its random batches of `x`, all in one loop with one
    optimiser, until the mean of the last 10 batch losses of every module is below `threshold`
    (or `max_iterations`). Returns the iterations used."""
    params = [p for e in experts for p in e.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    history: list[list[float]] = []
    for it in range(1, max_iterations + 1):
        opt.zero_grad(set_to_none=True)
        losses = []
        for e in experts:
            idx = torch.randint(len(x), (batch_size,), generator=generator).to(x.device)
            losses.append(F.mse_loss(e(x[idx]), x[idx]))
        torch.stack(losses).sum().backward()
        opt.step()
        history.append([v.item() for v in losses])
        recent = torch.tensor(history[-10:]).mean(0)
        if log is not None:
            log(it, history[-1])
        if it >= 10 and bool((recent < threshold).all()):
            return it
    return max_iterations


def pretrained_bank(num_experts: int, channels: int, width: int, arch: str, shared: bool, perturb: float,
                    x: torch.Tensor, lr: float, batch_size: int, threshold: float, max_iterations: int,
                    generator: torch.Generator, log=None) -> tuple[ExpertBank, int]:
    """A bank of experts initialised to approximately the identity on `x` (on x's device).

    shared: pretrain one expert and give every expert a perturbed copy (N' times less work);
    otherwise pretrain every expert on its own random batches. Returns (bank, iterations)."""
    fmt = torch.channels_last
    bank = ExpertBank(num_experts, channels, width, False, arch).to(x.device, memory_format=fmt)
    if shared:
        source = make_expert(arch, channels, width).to(x.device, memory_format=fmt)
        its = pretrain_identity([source], x, lr, batch_size, threshold, max_iterations, generator, log)
        perturbed_copies(source, bank, perturb, generator)
    else:
        its = pretrain_identity(list(bank.experts), x, lr, batch_size, threshold, max_iterations, generator, log)
    return bank, its


def reseed(bank: ExpertBank, opt: torch.optim.Optimizer, dead: int, source: int, scale: float,
           generator: torch.Generator) -> None:
    """Split a hogging expert: overwrite expert `dead` with a perturbed copy of expert `source` and
    clear its optimiser state, so that the two share, then divide, the source's mechanisms."""
    bank.experts[dead].load_state_dict(bank.experts[source].state_dict())
    with torch.no_grad():
        for p in bank.expert_params(dead):
            noise = torch.randn(p.shape, generator=generator).to(p.device)
            p.add_(noise * scale * p.detach().std(correction=0).clamp(min=1e-3))
            opt.state.pop(p, None)


def perturbed_copies(source: torch.nn.Module, bank: ExpertBank, scale: float, generator: torch.Generator) -> None:
    """Load `source`'s weights into every expert, then add noise of relative size `scale` to each
    weight tensor so that the identical experts can break symmetry."""
    state = source.state_dict()
    for e in bank.experts:
        e.load_state_dict(state)
        with torch.no_grad():
            for p in e.parameters():
                noise = torch.randn(p.shape, generator=generator).to(p.device)
                p.add_(noise * scale * p.detach().std(correction=0).clamp(min=1e-3))
