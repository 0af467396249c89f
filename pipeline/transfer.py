"""Transfer to an unseen domain (the paper's Omniglot experiment): MNIST-trained experts on
Omniglot characters transformed by the same mechanisms with the same params.

Per mechanism: the expert that wins most of its characters (argmax of D, as in evaluate), whether
it is the mechanism's owner on MNIST, its purity, and the MSE to the untransformed character of
the input and of the winner's output."""
from __future__ import annotations

import numpy as np
import torch

from pipeline import icm, mechanisms, metrics
from pipeline.data.splits import balanced_assignment


def transform(x: torch.Tensor, names: tuple[str, ...], shift: int, noise_std: float, seed: int):
    """Each character gets one mechanism (balanced, seeded). Returns (transformed, mechanism ids)."""
    ids = torch.from_numpy(balanced_assignment(len(x), len(names), np.random.default_rng(seed)))
    strength = mechanisms.Strength(shift=shift, noise_std=noise_std, generator=torch.Generator().manual_seed(seed))
    return mechanisms.apply(names, x, ids, strength), ids


def evaluate(names: tuple[str, ...], clean: torch.Tensor, x: torch.Tensor, mech: torch.Tensor,
             owner: torch.Tensor, out: torch.Tensor, n_experts: int, mnist_owner: dict[str, int]) -> dict:
    """The metrics contract of reports/metrics/mnist_transfer.json (see the module doc)."""
    m = metrics.assignment_matrix(mech.numpy(), owner.numpy(), len(names), n_experts)
    pur = metrics.purity(m)
    mse_in = (x - clean).square().flatten(1).mean(1)
    mse_out = (out - clean).square().flatten(1).mean(1)
    per = {}
    for j, name in enumerate(names):
        sel = mech == j
        dominant = int(m[j].argmax())
        per[name] = {"dominant_expert": dominant, "mnist_owner": mnist_owner[name],
                     "agrees": dominant == mnist_owner[name], "purity": float(pur[j]),
                     "mse_inputs": float(mse_in[sel].mean()), "mse_outputs": float(mse_out[sel].mean()),
                     "mse_ratio": float(mse_out[sel].mean() / mse_in[sel].mean().clamp_min(1e-12))}
    return {"n_characters": len(x), "n_mechanisms": len(names), "n_experts": n_experts,
            "owner_agreement": sum(r["agrees"] for r in per.values()),
            "distinct_winners": metrics.distinct_winners(m),
            "purity_mean": float(np.nanmean(pur)), "purity_min": float(np.nanmin(pur)),
            "mse_inputs": float(mse_in.mean()), "mse_outputs": float(mse_out.mean()),
            "per_mechanism": per}


@torch.no_grad()
def run(bank, disc, clean: torch.Tensor, names: tuple[str, ...], shift: int, noise_std: float, seed: int,
        mnist_owner: dict[str, int], batch_size: int, device) -> tuple[dict, dict]:
    """Transform, run every expert, pick winners, measure. Returns (metrics, tensors for the figure)."""
    x, mech = transform(clean, names, shift, noise_std, seed)
    owner, out = icm.winners(bank, disc, x.to(device), batch_size)
    owner, out = owner.cpu(), out.cpu().float()
    result = evaluate(names, clean, x, mech, owner, out, bank.n, mnist_owner)
    return result, {"clean": clean, "x": x, "mech": mech, "owner": owner, "out": out}
