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

from pipeline.config import Experts, Pretrain
from pipeline.distributed import Parallel
from pipeline.models.discriminator import Discriminator
from pipeline.models.experts import ExpertBank, make_expert
from pipeline.models.vae import Gaussian, vae_loss


def assign_argmax(scores: torch.Tensor) -> torch.Tensor:
    """The paper's rule: each sample goes to the expert D scores highest. scores: (B, N')."""
    return scores.argmax(dim=1)


def capacity(batch: int, num_experts: int, factor: float) -> int:
    return max(1, math.ceil(factor * batch / num_experts))


def assign_capacity(scores: torch.Tensor, cap: int) -> torch.Tensor:
    """Greedy by score, each expert taking at most `cap` samples; a full expert passes the sample
    on to the sample's next-best expert (MoE-style load balancing).

    The greedy walks all (sample, expert) pairs in descending score (ties: by flat index) and gives a
    free sample to a non-full expert. This computes the same assignment in torch ops, on the scores'
    device, in at most N'+1 rounds: each unassigned sample points at its best non-full expert; the first
    expert to fill up in the walk fills at the pair ranked `t`; every pointed-at pair ranked <= t is
    taken exactly as the walk takes it, and the next round starts with that expert full."""
    b, n = scores.shape
    if cap * n < b:
        raise ValueError(f"capacity {cap} x {n} experts cannot hold {b} samples")
    dev = scores.device
    order = torch.argsort(scores.flatten(), descending=True, stable=True)
    rank = torch.empty(b * n, dtype=torch.long, device=dev)
    rank[order] = torch.arange(b * n, device=dev)
    rank = rank.view(b, n)
    never = b * n                                    # a rank past every pair
    owner = torch.full((b,), -1, dtype=torch.long, device=dev)
    load = torch.zeros(n, dtype=torch.long, device=dev)
    rows = torch.arange(b, device=dev)
    for _ in range(n + 1):
        free = owner < 0
        if not bool(free.any()):
            break
        open_rank = rank.masked_fill((load >= cap)[None, :] | ~free[:, None], never)
        best_rank, best = open_rank.min(1)                 # per sample: its best non-full expert
        pointed = torch.full((n, b + 1), never, dtype=torch.long, device=dev)  # + a column that never fills
        pointed[best[free], rows[free]] = best_rank[free]   # per expert: the ranks of the samples pointing at it
        room = (cap - load).clamp(1, b + 1)
        fill = pointed.sort(1).values.gather(1, (room - 1)[:, None]).squeeze(1)  # rank where it would fill
        t = fill.min()
        take = free & (best_rank <= t)
        owner[take] = best[take]
        load += torch.bincount(best[take], minlength=n)
    return owner


def assign_hysteresis(scores: torch.Tensor, previous: torch.Tensor, margin: float) -> torch.Tensor:
    """Scores with `margin` added to each sample's previous owner (previous < 0: none yet), so that
    an owner keeps a sample unless another expert beats it by more than `margin`."""
    if margin <= 0:
        return scores
    has = previous >= 0
    out = scores.clone()
    out[has.nonzero(as_tuple=True)[0], previous[has]] += margin
    return out


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): the mean over real inputs of |grad_x D(x)|^2, as a term with a
    graph (differentiable in D's parameters). `real` must require grad and feed `real_logits`."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


@dc.dataclass
class StepStats:
    d_loss: float
    wins: list[int]          # samples won per expert
    loss: list[float]        # per expert: mean -log D(E(x)) over its won samples (nan if none)
    score: list[float]       # per expert: mean D(E(x)) (probability) over its won samples (nan if none)
    preferred: list[int]     # per expert: samples it scores highest on (its wins under plain argmax)
    owner: torch.Tensor      # global batch: each sample's winner (on the CPU)


def identity_term(out: torch.Tensor, x: torch.Tensor, blind_offsets: bool) -> torch.Tensor:
    """Per sample: mean |out - x|; `blind_offsets`: of the change minus its per-channel image mean, so
    a global colour or brightness change (the same offset on every pixel of a channel) costs nothing."""
    change = out - x
    if blind_offsets:
        change = change - change.mean(dim=(2, 3), keepdim=True)
    return change.abs().flatten(1).mean(1)


def icm_step(bank: ExpertBank, disc: Discriminator, opt_e: torch.optim.Optimizer,
             opt_d: torch.optim.Optimizer, x_canon: torch.Tensor, x_trans: torch.Tensor,
             assignment: str, cap: int, identity_weight: float, autocast: torch.dtype | None,
             par: Parallel, r1_gamma: float = 0.0, previous: torch.Tensor | None = None,
             hysteresis: float = 0.0, vae_weight: float = 0.0, noise_std: float = 0.0,
             generator: torch.Generator | None = None, raw_fake_weight: float = 0.0,
             identity_blind_offsets: bool = False, winner_fake_weight: float = 0.0) -> StepStats:
    """`identity_weight`: adds identity_weight * mean |E(x) - x| to each winner's loss (0 = the paper's
    loss); `identity_blind_offsets`: the term is taken on the correction E(x) - x minus its per-image,
    per-channel mean, so a global colour or brightness change costs nothing (identity_term).
    `autocast`: run the forward passes under autocast to this dtype (e.g. bf16 on CUDA); None = off.
    The winners are still picked from fp32 outputs and logits: bf16 rounding ties near-identical
    experts (fresh perturbed copies), and argmax would then always favour the lowest index. So the
    graph-free expert pass and D's scores are fp32; D's training pass and the winners' pass use autocast.
    `r1_gamma`: adds r1_gamma/2 * R1 on the canonical batch to D's loss (0 = off; one process only).
    `previous` (global batch, -1 = none) and `hysteresis`: see assign_hysteresis.
    `noise_std` > 0: instance noise (Sonderby et al. 2016): D's training pass and the winners' pass
    see their images plus Gaussian noise of this std, so D judges shape over pixel-level residue; the
    winners are still picked from D's scores on the clean outputs, as at evaluation. The noise is
    drawn from `generator` (CPU), so a resumed run draws the same noise.
    `raw_fake_weight` > 0: D also learns the raw transformed inputs x_trans as fakes, with this weight on
    their BCE term, so it keeps every mechanism's signature in view (a near-identity expert's output
    looks like its input), not only the artefacts of the experts' current outputs.
    `winner_fake_weight` > 0: D's loss adds this weight times the BCE of the winners' outputs as fakes
    (the paper's term spreads D's attention over all N' outputs, mostly losers' far-off ones); the loop
    switches it on once specialised, so D looks hard at what the owners still get wrong.
    VAE experts (bank.vae): the winners decode a reparameterised draw, and each winner's loss adds
    vae_weight * (reconstruction of its input + bank.beta * KL) / pixels to -log D (see models/vae.py).
    `par`: the data-parallel group; x_canon and x_trans are this rank's slices of the global batch,
    `cap` is for the global batch, and the returned stats are global (see pipeline/distributed.py)."""
    b, n = x_trans.shape[0], bank.n
    amp = lambda: torch.autocast(x_trans.device.type, dtype=autocast, enabled=autocast is not None)  # noqa: E731
    with torch.no_grad():                                       # fp32 even under autocast (see above)
        outs = bank.forward_all(x_trans)                        # (B, N', C, H, W)
    real_in = x_canon.detach().requires_grad_(r1_gamma > 0)

    def noisy(v: torch.Tensor) -> torch.Tensor:
        if noise_std == 0:
            return v
        return v + noise_std * torch.randn(v.shape, generator=generator).to(v.device, v.dtype)

    raw = [x_trans] if raw_fake_weight > 0 else []
    with amp():
        logits = par.disc(noisy(torch.cat([real_in, outs.flatten(0, 1), *raw]))).float()
    nr, nf = x_canon.shape[0], outs.shape[0] * n
    real, fake, raw_logits = logits[:nr], logits[nr: nr + nf], logits[nr + nf:]
    if autocast is None and noise_std == 0:
        fake_scores = fake.detach()
    else:                                  # fp32 scores on the clean outputs from D before its update
        with torch.no_grad():
            fake_scores = disc(outs.flatten(0, 1).float()).float()
    scores = par.gather(fake_scores.view(b, n))                 # global (B_all, N')
    if previous is not None:
        scores_for_owner = assign_hysteresis(scores, previous.to(scores.device), hysteresis)
    else:
        scores_for_owner = scores
    owner_all = (assign_argmax(scores_for_owner) if assignment == "argmax"
                 else assign_capacity(scores_for_owner, cap))
    owner = owner_all[par.shard(len(owner_all))]
    d_loss = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
              + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    if winner_fake_weight > 0:
        won = fake.view(b, n)[torch.arange(b, device=fake.device), owner.to(fake.device)]
        d_loss = d_loss + winner_fake_weight * F.binary_cross_entropy_with_logits(won, torch.zeros_like(won))
    if raw:
        d_loss = d_loss + raw_fake_weight * F.binary_cross_entropy_with_logits(raw_logits,
                                                                               torch.zeros_like(raw_logits))
    if r1_gamma > 0:
        d_loss = d_loss + r1_gamma / 2 * r1_penalty(real, real_in)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()

    with amp():
        y, kl = par.assigned(x_trans, owner) if bank.vae else (par.assigned(x_trans, owner), None)
        per_sample = F.softplus(-disc(noisy(y)).float())         # -log D(E_owner(x))
    opt_e.zero_grad(set_to_none=True)
    params = [p for p in bank.parameters() if p.requires_grad]
    total = per_sample.sum()
    if identity_weight:
        total = total + identity_weight * identity_term(y.float(), x_trans, identity_blind_offsets).sum()
    if kl is not None and vae_weight:
        total = total + vae_weight * vae_loss(y, x_trans, kl, bank.beta).sum()
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
                     preferred.tolist(), owner_all)


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


def identity_loss(e: torch.nn.Module, x: torch.Tensor, beta: float) -> torch.Tensor:
    """MSE of reproducing `x`; a VAE: its reparameterised reconstruction + beta * KL (models/vae.py)."""
    if isinstance(e, Gaussian):
        out, kl = e.sample(x)
        return vae_loss(out, x, kl, beta).mean()
    return F.mse_loss(e(x), x)


def pretrain_identity(experts: list[torch.nn.Module], x: torch.Tensor, lr: float, batch_size: int,
                      threshold: float, max_iterations: int, generator: torch.Generator,
                      log=None, beta: float = 1.0) -> int:
    """Train each module to reproduce its random batches of `x` (identity_loss), all in one loop
    with one optimiser, until the mean of the last 10 batch losses of every module is below
    `threshold` (or `max_iterations`). Returns the iterations used."""
    params = [p for e in experts for p in e.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    history: list[list[float]] = []
    for it in range(1, max_iterations + 1):
        opt.zero_grad(set_to_none=True)
        losses = []
        for e in experts:
            idx = torch.randint(len(x), (batch_size,), generator=generator).to(x.device)
            losses.append(identity_loss(e, x[idx], beta))
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
                    generator: torch.Generator, log=None, residual: bool = False, latent_dim: int = 0,
                    beta: float = 1.0) -> tuple[ExpertBank, int]:
    """A bank of experts initialised to approximately the identity on `x` (on x's device).
    `residual` experts start as the exact identity; pretraining then only fits the norm statistics.
    VAE experts (arch vae, `latent_dim`) minimise reconstruction + `beta` * KL (identity_loss).

    shared: pretrain one expert and give every expert a perturbed copy (N' times less work);
    otherwise pretrain every expert on its own random batches. Returns (bank, iterations)."""
    fmt = torch.channels_last
    size = x.shape[-1]
    bank = ExpertBank(num_experts, channels, width, False, arch, residual, size, latent_dim, beta)
    bank = bank.to(x.device, memory_format=fmt)
    if shared:
        source = make_expert(arch, channels, width, residual, size, latent_dim).to(x.device, memory_format=fmt)
        its = pretrain_identity([source], x, lr, batch_size, threshold, max_iterations, generator, log, beta)
        perturbed_copies(source, bank, perturb, generator)
    else:
        its = pretrain_identity(list(bank.experts), x, lr, batch_size, threshold, max_iterations, generator,
                                log, beta)
    return bank, its


def pretrain_experts(e: Experts, p: Pretrain, x: torch.Tensor, seed: int, log=None) -> tuple[ExpertBank, int]:
    """pretrained_bank with the dataset's experts and pretrain params (what the pretrain stage runs)."""
    return pretrained_bank(e.num_experts, x.shape[1], e.channels, e.arch, p.shared, p.perturb, x, p.lr, p.batch_size,
                           p.mse_threshold, p.max_iterations, torch.Generator().manual_seed(seed), log, e.residual,
                           e.latent_dim, e.beta)


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
