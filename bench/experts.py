"""Benchmark one full ICM training iteration (D step + winners' step), batch 32, at N' = 3 and 10.

Compares this project's step (pipeline.icm.icm_step, per-expert and batched forms) against a plain
implementation of the same algorithm, in the common public form: separate expert modules and
optimisers, one D call per expert, and a second forward per winning expert.

Prints (a) CPU iterations/s and the ratio to plain (target >= 1.0), and (b) ATen operators
dispatched per iteration, counted with a TorchDispatchMode: the device-independent proxy for GPU
launch overhead (target: batched <= 1/4 of plain at N' = 10, and flat in N'). View ops (no kernel
launch) are counted separately.

    python bench/experts.py [--seconds 8] [--experts 3 10] [--json reports/bench/experts.json]
"""
from __future__ import annotations

import argparse
import time
from collections import Counter

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from pipeline import icm
from pipeline.distributed import Parallel
from pipeline.models.discriminator import Discriminator
from pipeline.models.experts import Expert, ExpertBank

B, SIZE = 32, 28


class PlainICM:
    """The reference: a list of experts, one Adam each; D called once per expert."""

    def __init__(self, n: int):
        self.experts = [Expert(1, 32) for _ in range(n)]
        self.opts = [torch.optim.Adam(e.parameters(), lr=1e-3) for e in self.experts]
        self.disc = Discriminator(1, SIZE)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=1e-3)

    def step(self, xc: torch.Tensor, xt: torch.Tensor) -> None:
        outs = [e(xt) for e in self.experts]
        scores = torch.stack([self.disc(o.detach()) for o in outs], 1)
        winner = scores.argmax(1)
        d_loss = F.binary_cross_entropy_with_logits(self.disc(xc), torch.ones(len(xc)))
        for o in outs:
            d_loss = d_loss + F.binary_cross_entropy_with_logits(self.disc(o.detach()), torch.zeros(len(o))) / len(outs)
        self.opt_d.zero_grad()
        d_loss.backward()
        self.opt_d.step()
        for i, (e, opt) in enumerate(zip(self.experts, self.opts)):
            idx = (winner == i).nonzero(as_tuple=True)[0]
            if len(idx):
                loss = F.softplus(-self.disc(e(xt[idx]))).sum() / len(xt)
                opt.zero_grad()
                loss.backward()
                opt.step()


class Ours:
    def __init__(self, n: int, batched: bool, channels_last: bool):
        self.bank = ExpertBank(n, 1, 32, batched, "paper")
        self.bank.freeze_norm_stats()
        self.disc = Discriminator(1, SIZE)
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.bank.to(memory_format=self.fmt)
        self.disc.to(memory_format=self.fmt)
        self.opt_e = torch.optim.Adam(self.bank.parameters(), lr=1e-3)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=1e-3)
        self.par = Parallel.single(self.bank, self.disc)

    def step(self, xc, xt):
        icm.icm_step(self.bank, self.disc, self.opt_e, self.opt_d, xc.contiguous(memory_format=self.fmt),
                     xt.contiguous(memory_format=self.fmt), "argmax", B, 0.0, None, self.par)


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops, self.views = Counter(), 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func] += 1
        self.views += int(func.is_view)
        return func(*args, **(kwargs or {}))


def timed(model, xc, xt, seconds: float) -> float:
    model.step(xc, xt)  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.step(xc, xt)
        n += 1
    return n / (time.perf_counter() - start)


def count(model, xc, xt, steps: int = 5) -> tuple[int, int]:
    """Median over `steps` iterations: an expert's first win also creates its Adam state (a
    one-off ~50 ops), which a single counted step would otherwise include by chance."""
    totals = []
    for _ in range(steps):
        with CountOps() as c:
            model.step(xc, xt)
        totals.append((sum(c.ops.values()), sum(c.ops.values()) - c.views))
    return sorted(totals)[steps // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0, help="timing window per variant")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--experts", type=int, nargs="+", default=[3, 10], help="the N' values to measure")
    args = ap.parse_args()
    torch.manual_seed(0)
    xc, xt = torch.rand(B, 1, SIZE, SIZE), torch.rand(B, 1, SIZE, SIZE)
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {B}, {SIZE}x{SIZE}")
    print(f"{'N':>3} {'variant':<26} {'it/s':>7} {'x plain':>8} {'ops/it':>8} {'non-view':>9} {'ops/plain':>10} {'non-view/plain':>15}")
    for n in args.experts:
        variants = {"plain (reference)": PlainICM(n),
                    "ours per-expert NCHW": Ours(n, False, False),
                    "ours per-expert ch-last": Ours(n, False, True),
                    "ours batched ch-last": Ours(n, True, True)}
        base_speed = base_ops = base_kernels = None
        for name, model in variants.items():
            ops, kernels = count(model, xc, xt)
            speed = timed(model, xc, xt, args.seconds)
            base_speed, base_ops, base_kernels = base_speed or speed, base_ops or ops, base_kernels or kernels
            rows.append({"n_experts": n, "variant": name, "iters_per_second": round(speed, 3),
                         "speedup": round(speed / base_speed, 3), "ops": ops, "non_view_ops": kernels,
                         "ops_ratio": round(ops / base_ops, 3),
                         "non_view_ratio": round(kernels / base_kernels, 3)})
            print(f"{n:>3} {name:<26} {speed:>7.2f} {speed / base_speed:>8.2f} {ops:>8} {kernels:>9} "
                  f"{ops / base_ops:>10.2f} {kernels / base_kernels:>15.2f}")
    if args.json:   # the JSON names its source: the commit, torch, threads and the timing window
        import subprocess

        from pipeline.io import save_json
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True).stdout.strip()
        save_json({"commit": (head or "unknown") + ("+dirty" if dirty else ""), "torch": torch.__version__,
                   "threads": torch.get_num_threads(), "batch": B, "size": SIZE, "seconds": args.seconds,
                   "rows": rows}, args.json)


if __name__ == "__main__":
    main()
