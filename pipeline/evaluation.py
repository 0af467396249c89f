"""Held-out evaluation of trained experts: the metrics contracts of reports/metrics/<ds>.json.

Both kinds share the assignment part (mechanism or group x argmax winner, purity, distinct
winners). MNIST adds digit accuracies; faces add canonical rates, D scores, identity kept (SSIM),
a collapse check (output spread vs input spread per expert) and, with ground truth, PSNR.
"""
from __future__ import annotations

import numpy as np
import torch

from pipeline import icm, imagemetrics, metrics
from pipeline.data.tasks import CANONICAL
from pipeline.models.classifier import predict
from pipeline.runtime import images_to


def specialization(mech: np.ndarray, owner: np.ndarray, n_mech: int, n_experts: int) -> tuple[dict, np.ndarray]:
    m = metrics.assignment_matrix(mech, owner, n_mech, n_experts)
    pur = metrics.purity(m)
    return {"n_mechanisms": n_mech, "n_experts": n_experts, "distinct_winners": metrics.distinct_winners(m),
            "purity_mean": float(np.nanmean(pur)), "purity_min": float(np.nanmin(pur))}, m


def spread(x: torch.Tensor) -> float:
    """Mean pairwise L2 distance (nan for fewer than 2 samples)."""
    return imagemetrics.mean_pairwise_distance(x) if len(x) >= 2 else float("nan")


def collapse(x: torch.Tensor, out: torch.Tensor, owner: np.ndarray, n_experts: int) -> dict:
    """Per expert: the spread of the outputs it won over the spread of their inputs (1 = as varied as
    the inputs, 0 = one face for all). `min_ratio` over experts with at least 2 samples."""
    per = {}
    for i in range(n_experts):
        idx = torch.from_numpy(np.flatnonzero(owner == i))
        if len(idx) >= 2:
            per[f"expert_{i}"] = round(spread(out[idx]) / spread(x[idx]), 4)
    return {"output_spread": spread(out), "input_spread": spread(x), "min_ratio": min(per.values(), default=None),
            "per_expert": per}


def mnist(names: list[str], mech: np.ndarray, owner: np.ndarray, n_experts: int, p_clean: np.ndarray,
          y_clean: np.ndarray, p_trans: np.ndarray, p_out: np.ndarray, y_trans: np.ndarray, train: dict) -> dict:
    spec, m = specialization(mech, owner, len(names), n_experts)
    pur = metrics.purity(m)
    return {
        "classifier": {"acc_clean": metrics.accuracy(p_clean, y_clean),
                       "acc_transformed": metrics.accuracy(p_trans, y_trans),
                       "acc_experts": metrics.accuracy(p_out, y_trans)},
        "specialization": spec,
        "train": {k: train[k] for k in ("iterations", "seconds", "iters_per_second",
                                        "iterations_to_specialize", "seconds_to_specialize")},
        "per_mechanism": {
            name: {"dominant_expert": int(m[j].argmax()), "purity": float(pur[j]),
                   "acc_transformed": metrics.accuracy(p_trans[mech == j], y_trans[mech == j]),
                   "acc_experts": metrics.accuracy(p_out[mech == j], y_trans[mech == j])}
            for j, name in enumerate(names)},
    }


def faces(names: list[str], mech: np.ndarray, owner: np.ndarray, n_experts: int, x: torch.Tensor,
          out: torch.Tensor, d_out: torch.Tensor, p_trans: np.ndarray, p_out: np.ndarray, clf: dict,
          train: dict, clean: torch.Tensor | None) -> dict:
    """`x`/`out`: test transformed inputs and their winners' outputs; `d_out`: D's probability on
    `out`; `p_*`: classifier labels; `clean`: the faces before their mechanism (synthetic mode)."""
    spec, m = specialization(mech, owner, len(names), n_experts)
    pur = metrics.purity(m)
    ssim = imagemetrics.ssim(x, out)
    result = {
        "specialization": spec,
        "assignment": {name: m[j].astype(int).tolist() for j, name in enumerate(names)},
        "classifier": {"val_acc": clf["val_acc"], "test_acc": clf["test_acc"],
                       "canonical_rate_inputs": float(np.mean(p_trans == CANONICAL)),
                       "canonical_rate_outputs": float(np.mean(p_out == CANONICAL))},
        "d_score_outputs": float(d_out.mean()),
        "ssim_input_output": float(ssim.mean()),
        "collapse": collapse(x, out, owner, n_experts),
        "train": {k: train[k] for k in ("iterations", "seconds", "iters_per_second", "pretrain_seconds")},
    }
    if clean is not None:
        pin, pout = imagemetrics.psnr(x, clean), imagemetrics.psnr(out, clean)
        result["psnr_inputs"], result["psnr_outputs"] = float(pin.mean()), float(pout.mean())
    per = {}
    for j, name in enumerate(names):
        sel = mech == j
        per[name] = {"dominant_expert": int(m[j].argmax()), "purity": float(pur[j]),
                     "ssim_input_output": float(ssim[sel].mean()),
                     "canonical_rate_inputs": float(np.mean(p_trans[sel] == CANONICAL)),
                     "canonical_rate_outputs": float(np.mean(p_out[sel] == CANONICAL))}
        if clean is not None:
            per[name].update(psnr_inputs=float(pin[sel].mean()), psnr_outputs=float(pout[sel].mean()))
    result["per_group" if clean is None else "per_mechanism"] = per
    return result


@torch.no_grad()
def faces_on_test(bank, disc, clf: torch.nn.Module, saved_clf: dict, t: dict, train: dict, batch_size: int,
                  device) -> tuple[dict, np.ndarray]:
    """Winners on the test split's transformed faces, then `faces` on them. Shared by the evaluate
    stage and bench/variants.py. Returns (metrics, winner per sample)."""
    x = images_to(t["test_transformed"], device)
    owner, out = icm.winners(bank, disc, x, batch_size)
    d_out = torch.cat([torch.sigmoid(disc(c)) for c in out.split(batch_size)]).cpu()
    p_trans, p_out = (predict(clf, a, batch_size).cpu().numpy() for a in (x, out))
    owner = owner.cpu().numpy()
    result = faces(t["mechanisms"], t["test_transformed_mech"].numpy(), owner, bank.n, x.cpu().contiguous(),
                   out.cpu().contiguous(), d_out, p_trans, p_out, saved_clf, train, t.get("test_transformed_clean"))
    return result, owner
