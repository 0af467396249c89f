"""The competitive training loop: steps, periodic specialisation checks, per-step curves and
resumable state. Works on tensors and modules; the caller saves checkpoints and outputs."""
from __future__ import annotations

import dataclasses as dc
import math
import time
from collections import defaultdict

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from pipeline import icm, metrics
from pipeline.config import Experts, Train
from pipeline.distributed import Launch, Parallel
from pipeline.io import load_weights
from pipeline.models.discriminator import Discriminator
from pipeline.models.experts import ExpertBank, use_batched


@dc.dataclass
class State:
    bank: ExpertBank
    disc: Discriminator
    opt_e: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    generator: torch.Generator
    par: Parallel                        # data-parallel group (one process: plain modules)
    iteration: int = 0
    seconds: float = 0.0                 # training wall-clock so far (checks excluded)
    curves: dict = dc.field(default_factory=lambda: defaultdict(list))
    specialized_at: tuple[int, float] | None = None   # (iteration, training seconds)
    preference: torch.Tensor | None = None   # running share of samples each expert scores highest on
    ema: AveragedModel | None = None         # EMA of the expert weights (cfg.ema > 0), for evaluation
    last_owner: torch.Tensor | None = None   # per training sample: its last winner (-1: none yet), hysteresis
    settled: bool = False                    # specialised, as every rank knows: lrs x cfg.lr_specialized_*,
                                             # and D learns the winners as fakes (cfg.winner_fake_weight)

    def state_dict(self) -> dict:
        return {"bank": self.bank.state_dict(), "disc": self.disc.state_dict(),
                "opt_e": self.opt_e.state_dict(), "opt_d": self.opt_d.state_dict(),
                "generator": self.generator.get_state(), "iteration": self.iteration,
                "seconds": self.seconds, "curves": dict(self.curves), "specialized_at": self.specialized_at,
                "preference": self.preference, "ema": self.ema.state_dict() if self.ema is not None else None,
                "last_owner": self.last_owner, "settled": self.settled}

    def load_state_dict(self, d: dict) -> None:
        self.bank.load_state_dict(d["bank"])
        self.disc.load_state_dict(d["disc"])
        self.opt_e.load_state_dict(d["opt_e"])
        self.opt_d.load_state_dict(d["opt_d"])
        self.generator.set_state(d["generator"])
        self.iteration, self.seconds = d["iteration"], d["seconds"]
        self.curves = defaultdict(list, d["curves"])
        self.specialized_at = d["specialized_at"]
        self.preference = d["preference"]
        if self.ema is not None:
            self.ema.load_state_dict(d["ema"])
        self.last_owner = d["last_owner"]
        self.settled = d["settled"]

    def eval_bank(self) -> ExpertBank:
        """The weights to evaluate: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else self.bank


def build(experts: Experts, channels: int, size: int, device, bank_state: dict,
          disc_state: dict | None = None, spectral_norm: bool = False) -> tuple[ExpertBank, Discriminator]:
    """The competitive-phase models on `device`: the bank (frozen norm statistics, in the form
    `experts.batched` picks for the device) and the discriminator (new unless `disc_state`)."""
    bank = ExpertBank(experts.num_experts, channels, experts.channels,
                      use_batched(experts.batched, device, experts.arch), experts.arch, experts.residual,
                      size, experts.latent_dim, experts.beta)
    load_weights(bank, bank_state, "expert weights", "pretrain")
    bank.freeze_norm_stats()
    disc = Discriminator(channels, size, spectral_norm=spectral_norm)
    if disc_state is not None:
        load_weights(disc, disc_state, "discriminator weights", "train")
    return (bank.to(device, memory_format=torch.channels_last),
            disc.to(device, memory_format=torch.channels_last))


def start(bank_state: dict, experts: Experts, cfg: Train, channels: int, size: int, device, seed: int,
          launch: Launch) -> State:
    """Fresh training state from pretrained expert weights, with a new discriminator and optimisers."""
    return new_state(*build(experts, channels, size, device, bank_state, spectral_norm=cfg.spectral_norm),
                     cfg, seed, launch)


def new_state(bank: ExpertBank, disc: Discriminator, cfg: Train, seed: int, launch: Launch) -> State:
    """`launch.world` > 1: wrap the models for DDP (the process group must be initialised)."""
    opt_e = torch.optim.Adam(bank.parameters(), lr=cfg.lr_experts)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_discriminator)
    device = next(disc.parameters()).device
    par = (Parallel.single(bank, disc) if launch.world == 1
           else Parallel.ddp(bank, disc, launch.rank, launch.world, device))
    ema = (AveragedModel(bank, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
           if cfg.ema > 0 else None)
    return State(bank, disc, opt_e, opt_d, torch.Generator().manual_seed(seed), par, ema=ema)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """`bf16`: always; `auto`: bf16 on CUDA devices that support it, else fp32 (None = no autocast)."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return None


def check(state: State, x: torch.Tensor, mech: np.ndarray, n_mech: int, threshold: float, batch_size: int):
    """Assignment of a held-out transformed batch under the plain argmax rule.
    Returns (mechanism x expert counts, specialised?, the winners' outputs)."""
    state.disc.eval()     # spectral norm: no power-iteration step from a check
    owner, out = icm.winners(state.eval_bank(), state.disc, x, batch_size)
    state.disc.train()
    m = metrics.assignment_matrix(mech, owner.cpu().numpy(), n_mech, state.bank.n)
    return m, metrics.specialized(m, threshold), out


def stability(purity_min: list[tuple[int, float]], specialized_at: int | None) -> dict:
    """How well owners stay put, from the periodic checks' (iteration, purity min) curve: the lowest
    purity min over the last 25% of checks, and over every check from the first specialised one on
    (None if never specialised)."""
    values = [v for _, v in purity_min]
    late = values[len(values) - max(1, len(values) // 4):] if values else []
    after = [v for it, v in purity_min if specialized_at is not None and it >= specialized_at]
    return {"purity_min_last_quarter": round(min(late), 4) if late else None,
            "purity_min_after_specialized": round(min(after), 4) if after else None}


def lr_scale(it: int, iterations: int, final: float) -> float:
    """Cosine decay of the learning rates from 1 at the first iteration to `final` at the last."""
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * (it - 1) / max(1, iterations - 1)))


def linear_decay(it: int, iterations: int) -> float:
    """1 at the first iteration, falling linearly to 0 at the last (the instance-noise schedule)."""
    return 1 - (it - 1) / max(1, iterations - 1)


def maybe_reseed(state: State, preferred: list[int], cfg: Train, it: int, log=None) -> None:
    """Unsupervised hog splitting. Track each expert's running share of the samples it scores highest
    on (its argmax preference; capacity limits hide this in the wins). Every `reseed_every` iterations,
    if the least preferred expert is below `reseed_below`/N' and the most preferred above
    `reseed_above`/N', the first becomes a perturbed copy of the second."""
    n = state.bank.n
    share = torch.tensor(preferred, dtype=torch.float64) / sum(preferred)
    pref = share if state.preference is None else 0.9 * state.preference + 0.1 * share
    state.preference = pref
    if it % cfg.reseed_every:
        return
    dead, hog = int(pref.argmin()), int(pref.argmax())
    if pref[dead] < cfg.reseed_below / n and pref[hog] > cfg.reseed_above / n:
        icm.reseed(state.bank, state.opt_e, dead, hog, cfg.reseed_perturb, state.generator)
        if state.ema is not None:   # the new expert's average starts from its new weights
            state.ema.module.experts[dead].load_state_dict(state.bank.experts[dead].state_dict())
        pref[dead] = pref[hog] = pref[hog] / 2
        state.curves["reseeds"].append((it, dead))
        if log:
            log(f"train: iteration {it}: expert {dead} (preferred {float(share[dead]):.2f}) "
                f"reseeded from expert {hog}")


def train(state: State, x_canon: torch.Tensor, x_trans: torch.Tensor, x_check: torch.Tensor,
          mech_check: np.ndarray, n_mech: int, cfg: Train, on_checkpoint=None, log=None, monitor=None) -> State:
    """Run from state.iteration to cfg.iterations; records curves and the first specialised check.
    `monitor(outputs) -> {name: value}`, if given, is called at each check on the winners' outputs for
    the check batch (e.g. an evaluator's verdict); its values become curves `monitor/<name>`.
    Under DDP every rank draws the same global batch indices and keeps its slice; checks, curves and
    `on_checkpoint` run on rank 0 only."""
    cap = icm.capacity(cfg.batch_size, state.bank.n, cfg.capacity_factor)
    dev = x_trans.device
    amp = autocast_dtype(cfg.precision, dev)
    mine = state.par.shard(cfg.batch_size)
    lead = state.par.rank == 0
    c = state.curves
    if cfg.hysteresis > 0 and state.last_owner is None:
        state.last_owner = torch.full((len(x_trans),), -1, dtype=torch.long)
    while state.iteration < cfg.iterations:
        it = state.iteration + 1
        start = time.perf_counter()
        scale = lr_scale(it, cfg.iterations, cfg.lr_final_fraction)
        for opt, base, factor in ((state.opt_e, cfg.lr_experts, cfg.lr_specialized_experts),
                                  (state.opt_d, cfg.lr_discriminator, cfg.lr_specialized_discriminator)):
            for group in opt.param_groups:
                group["lr"] = base * scale * (factor if state.settled else 1.0)
        ic = torch.randint(len(x_canon), (cfg.batch_size,), generator=state.generator)[mine].to(dev)
        itr_all = torch.randint(len(x_trans), (cfg.batch_size,), generator=state.generator)
        itr = itr_all[mine].to(dev)
        previous = state.last_owner[itr_all] if cfg.hysteresis > 0 else None
        s = icm.icm_step(state.bank, state.disc, state.opt_e, state.opt_d, x_canon[ic], x_trans[itr],
                         cfg.assignment, cap, cfg.identity_weight, amp, state.par, cfg.r1_gamma,
                         previous, cfg.hysteresis, cfg.vae_weight,
                         cfg.instance_noise * linear_decay(it, cfg.iterations), state.generator,
                         cfg.raw_fake_weight, cfg.identity_blind_offsets,
                         cfg.winner_fake_weight if state.settled else 0.0)
        if cfg.hysteresis > 0:
            state.last_owner[itr_all] = s.owner
        if state.ema is not None:
            state.ema.update_parameters(state.bank)
        if cfg.reseed_every:
            maybe_reseed(state, s.preferred, cfg, it, log)
        state.seconds += time.perf_counter() - start
        state.iteration = it
        c["d_loss"].append((it, s.d_loss))
        for i in range(state.bank.n):
            c[f"wins/expert_{i}"].append((it, s.wins[i]))
            if s.wins[i]:
                c[f"loss/expert_{i}"].append((it, s.loss[i]))
                c[f"score/expert_{i}"].append((it, s.score[i]))
        checking = it % cfg.check_every == 0 or it == cfg.iterations
        if lead and checking:
            m, ok, out = check(state, x_check, mech_check, n_mech, cfg.purity_threshold, 256)
            pur = metrics.purity(m)
            for name, value in (monitor(out) if monitor else {}).items():
                c[f"monitor/{name}"].append((it, value))
            c["specialization/distinct_winners"].append((it, metrics.distinct_winners(m)))
            c["specialization/purity_mean"].append((it, float(np.nanmean(pur))))
            c["specialization/purity_min"].append((it, float(np.nanmin(pur))))
            if ok and state.specialized_at is None:
                state.specialized_at = (it, state.seconds)
            if log:
                log(f"train: iteration {it}/{cfg.iterations} {state.seconds:.0f} s "
                    f"d_loss {s.d_loss:.3f} distinct {metrics.distinct_winners(m)}/{n_mech} "
                    f"purity mean {np.nanmean(pur):.2f} min {np.nanmin(pur):.2f}" + (" specialised" if ok else ""))
        if checking and not state.settled and (min(cfg.lr_specialized_experts, cfg.lr_specialized_discriminator) < 1
                                               or cfg.winner_fake_weight > 0):
            state.settled = state.par.mean(float(state.specialized_at is not None), dev) > 0   # rank 0 checks
        if lead and on_checkpoint and it % cfg.checkpoint_every == 0 and it < cfg.iterations:
            on_checkpoint(state)   # for an interrupted run only: a finished run is never resumed
    return state
