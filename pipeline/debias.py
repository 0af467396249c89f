"""Debiasing a gender classifier per race × gender: DB-VAE against ERM and group reweighting.

Data: a training sample skewed by a race mix (default 90 % White, the common UTKFace bias
protocol), and a test set balanced over race × gender (the same count per cell, disjoint).
Arms, on one backbone (models/dbvae.py), with the same epochs and data; each epoch draws as many
faces as the training set holds:
- `erm`: a shuffled pass (uniform, without replacement);
- `reweight`: drawn with probability ∝ 1 / count(race × gender cell): an oracle that uses the
  group labels, the reference for what is achievable;
- `dbvae`: drawn with probability ∝ inverse latent density, no group labels (Amini et al. 2019).
  Per latent dimension j, a histogram of the training faces' μ_j with `bins` bins gives each
  face the mass Q_j of its bin (the bin's share of the faces). Rule `max` (the MIT lab's):
  w_j ∝ 1 / (Q_j + α) normalised over faces, then w = max_j w_j. Rule `product` (the paper's):
  w ∝ Π_j 1 / (Q_j + α), computed in log space (it underflows otherwise).
  The loss adds reconstruction + KL (vae.py's per-pixel `vae_loss`, weighted) to the BCE.
Metrics per arm: accuracy per cell, their mean, the worst cell, the gap (max − min) and the
variance across cells (in percentage points²), and precision and recall per gender.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.errors import PipelineError
from pipeline.models.dbvae import DebiasNet
from pipeline.models.vae import vae_loss

ARMS = ("erm", "reweight", "dbvae")
GENDERS = ("male", "female")   # UTKFace gender codes 0, 1


def cell_name(race: str, gender: int) -> str:
    return f"{race}_{GENDERS[gender]}"


def allocate(mix: dict[str, float], total: int) -> dict[str, int]:
    """Counts per race that sum to `total`, proportional to `mix` (largest remainders)."""
    raw = {r: share * total for r, share in mix.items()}
    counts = {r: int(np.floor(v)) for r, v in raw.items()}
    for r in sorted(raw, key=lambda r: counts[r] - raw[r])[: total - sum(counts.values())]:
        counts[r] += 1
    return counts


def skewed_split(race: np.ndarray, gender: np.ndarray, mix: dict[str, float], train_size: int,
                 test_per_cell: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices. Test: `test_per_cell` faces of every race in `mix` × gender; train:
    `train_size` faces split over the races by `mix`, drawn from the faces left over."""
    race, gender = np.asarray(race), np.asarray(gender)
    test = []
    for r in mix:
        for g in range(len(GENDERS)):
            cell = np.flatnonzero((race == r) & (gender == g))
            if len(cell) < test_per_cell:
                raise PipelineError(f"debias: cell {cell_name(r, g)} has {len(cell)} faces, fewer than "
                                    f"test_per_cell={test_per_cell}; lower debias.test_per_cell")
            test.append(rng.choice(cell, test_per_cell, replace=False))
    test = np.sort(np.concatenate(test))
    left = np.setdiff1d(np.arange(len(race)), test)
    train = []
    for r, n in allocate(mix, train_size).items():
        pool = left[race[left] == r]
        if len(pool) < n:
            raise PipelineError(f"debias: the race mix asks for {n} {r} training faces but only {len(pool)} "
                                "are left after the test set; lower debias.train_size or change debias.race_mix")
        train.append(rng.choice(pool, n, replace=False))
    return np.sort(np.concatenate(train)), test


def bin_mass(mu: np.ndarray, bins: int) -> np.ndarray:
    """(N, D): per face and latent dimension, the share of the faces in its histogram bin."""
    out = np.empty(mu.shape, dtype=np.float64)
    for j in range(mu.shape[1]):
        counts, edges = np.histogram(mu[:, j], bins=bins)
        idx = np.clip(np.searchsorted(edges, mu[:, j], side="right") - 1, 0, bins - 1)
        out[:, j] = counts[idx] / len(mu)
    return out


def latent_probabilities(mu: np.ndarray, bins: int, alpha: float, rule: str) -> np.ndarray:
    """Resampling probabilities ∝ inverse latent density (module docstring), summing to 1."""
    q = bin_mass(mu, bins)
    if rule == "max":
        w = 1.0 / (q + alpha)
        w = (w / w.sum(0)).max(1)
    elif rule == "product":
        logw = -np.log(q + alpha).sum(1)
        w = np.exp(logw - logw.max())
    else:
        raise ValueError(f"unknown rule {rule!r}")
    return w / w.sum()


def group_probabilities(groups: np.ndarray) -> np.ndarray:
    """Probabilities ∝ 1 / count of the face's group (every group then gets the same share)."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    return w / w.sum()


@torch.no_grad()
def encode(model: DebiasNet, x: torch.Tensor, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(P(female) per face, μ per face), in eval mode."""
    model.eval()
    probs, mus = [], []
    for chunk in x.split(batch):
        logit, mu, _ = model(chunk)
        probs.append(torch.sigmoid(logit))
        mus.append(mu)
    model.train()
    return torch.cat(probs).numpy(), torch.cat(mus).numpy()


def train_arm(arm: str, x: torch.Tensor, y: np.ndarray, groups: np.ndarray, p, seed: int,
              log=None) -> tuple[DebiasNet, dict]:
    """One arm on faces `x` (N, 3, S, S) in [0, 1] with gender `y`. `groups` (race × gender names)
    steer `reweight` only; for every arm they also report the share of each group among the last
    epoch's draws (a diagnostic: does DB-VAE's resampling reach the rare groups?). `p` holds the
    debias params (config.Debias). Returns (model in eval mode, draw shares)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = DebiasNet(x.shape[-1], p.channels, p.latent_dim, x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=p.lr)
    target = torch.as_tensor(y, dtype=torch.float32)
    n, start = len(x), time.perf_counter()
    for epoch in range(1, p.epochs + 1):
        if arm == "erm":
            order = torch.randperm(n, generator=gen).numpy()
        else:
            probs = (group_probabilities(groups) if arm == "reweight"
                     else latent_probabilities(encode(model, x, p.batch_eval)[1], p.bins, p.alpha, p.rule))
            order = rng.choice(n, n, replace=True, p=probs)
        names, counts = np.unique(np.asarray(groups)[order], return_counts=True)
        shares = {str(g): round(float(c) / n, 4) for g, c in zip(names, counts)}
        total, seen = 0.0, 0
        for idx in torch.from_numpy(order).split(p.batch_size):
            xb, yb = x[idx], target[idx]
            if p.hflip:
                flip = torch.rand(len(xb), generator=gen) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            logit, mu, logvar = model(xb)
            loss = F.binary_cross_entropy_with_logits(logit, yb)
            if arm == "dbvae":
                out, kl = model.reconstruct(mu, logvar, torch.randn(mu.shape, generator=gen))
                loss = loss + p.recon_weight * vae_loss(out, xb, kl, p.kl_weight).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, seen = total + loss.item() * len(idx), seen + len(idx)
        if log:
            log(f"debias: seed {seed} {arm} epoch {epoch}/{p.epochs} loss {total / seen:.4f} "
                f"({time.perf_counter() - start:.0f} s)")
    model.eval()
    return model, shares


def cell_metrics(pred: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict:
    """Accuracy per group (cell) and across cells; precision and recall per gender."""
    pred, y, groups = np.asarray(pred), np.asarray(y), np.asarray(groups)
    cells = {str(g): float((pred[groups == g] == y[groups == g]).mean()) for g in sorted(set(groups))}
    acc = np.array(list(cells.values()))
    out = {"cells": cells, "mean_acc": float(acc.mean()), "worst_acc": float(acc.min()),
           "worst_cell": min(cells, key=cells.get), "gap": float(acc.max() - acc.min()),
           "variance_pp2": float((100 * acc).var()), "accuracy": float((pred == y).mean())}
    for code, name in enumerate(GENDERS):
        predicted, actual = pred == code, y == code
        hit = float((predicted & actual).sum())
        out[f"precision_{name}"] = hit / float(predicted.sum()) if predicted.any() else None
        out[f"recall_{name}"] = hit / float(actual.sum()) if actual.any() else None
    return out


SCALARS = ("mean_acc", "worst_acc", "gap", "variance_pp2", "accuracy", "precision_male", "recall_male",
           "precision_female", "recall_female")


def summarise(runs: list[dict]) -> dict:
    """Per arm's runs (one per seed): mean and std (population) of every scalar and of every cell."""
    def stats(values):
        got = np.array([v for v in values if v is not None], dtype=float)
        if not len(got):
            return {"mean": None, "std": None, "missing": len(values)}
        return {"mean": round(float(got.mean()), 4), "std": round(float(got.std()), 4), "missing": len(values) - len(got)}
    out = {k: stats([r[k] for r in runs]) for k in SCALARS}
    out["cells"] = {c: stats([r["cells"][c] for r in runs]) for c in runs[0]["cells"]}
    return out


def compare(arms: dict) -> dict:
    """The issue's comparisons, on the seeds' means: DB-VAE against ERM, and the share of the
    ERM → reweighting worst-cell gain that DB-VAE recovers."""
    m = lambda arm, key: arms[arm]["summary"][key]["mean"]  # noqa: E731
    out = {}
    if "erm" in arms and "dbvae" in arms:
        out["worst_gain_dbvae"] = round(m("dbvae", "worst_acc") - m("erm", "worst_acc"), 4)
        out["gap_ratio_dbvae"] = round(m("dbvae", "gap") / m("erm", "gap"), 4) if m("erm", "gap") else None
        out["mean_change_dbvae"] = round(m("dbvae", "mean_acc") - m("erm", "mean_acc"), 4)
        if "reweight" in arms:
            oracle = m("reweight", "worst_acc") - m("erm", "worst_acc")
            out["worst_gain_reweight"] = round(oracle, 4)
            out["closed_share_dbvae"] = round(out["worst_gain_dbvae"] / oracle, 4) if oracle > 0 else None
    return out
