"""The β-VAE latent study of faces: train a VAE on faces of every race, then measure, per latent
dimension, how much it says about each label (age, gender, race), instead of picking dimensions
by eye.

- Mutual information I(μ_j; label) per dimension j, with scikit-learn's nearest-neighbour estimator
  (`mutual_info_classif`, in nats) on the posterior means of the test faces.
- MIG from labels (Chen et al. 2018): per label, (I of the best dimension − I of the second best)
  / H(label); high when one dimension alone carries the label.
- Linear probes: logistic regression from the whole latent μ, against the same probe on the raw
  pixels (average-pooled to `probe_pixels` px per side so that the probe stays linear and cheap).
- The top dimension per label alone: its AUC for a binary label (gender), read in either direction.
- A traversal: each top dimension swept from −3 to +3 (posterior mean of the others held).
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.feature_selection import mutual_info_classif
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from pipeline.models.vae import VAE, kl_divergence, vae_loss


def age_bins(age: np.ndarray, edges: tuple[int, ...]) -> np.ndarray:
    """Age in years -> bin index: bin i holds edges[i-1] <= age < edges[i] (0: below edges[0])."""
    return np.searchsorted(np.asarray(edges), np.asarray(age), side="right")


def entropy(labels: np.ndarray) -> float:
    """H(label) in nats from the label frequencies."""
    p = np.bincount(np.asarray(labels)) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mutual_information(z: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """I(z_j; label) in nats for every column j (continuous z, discrete label)."""
    return mutual_info_classif(z, labels, discrete_features=False, random_state=seed)


def mig(mi: np.ndarray, labels: np.ndarray) -> float:
    """(largest − second largest I(z_j; label)) / H(label)."""
    top = np.sort(np.asarray(mi))[::-1]
    second = top[1] if len(top) > 1 else 0.0
    return float((top[0] - second) / entropy(labels))


def probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, seed: int) -> float:
    """Test accuracy of a standardised multinomial logistic regression."""
    scale = StandardScaler().fit(train_x)
    model = LogisticRegression(max_iter=2000, random_state=seed).fit(scale.transform(train_x), train_y)
    return float(model.score(scale.transform(test_x), test_y))


def auc_either_way(score: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of one score for a binary label, in the better direction (a latent's sign is arbitrary)."""
    auc = roc_auc_score(labels, score)
    return float(max(auc, 1 - auc))


def pooled_pixels(x: torch.Tensor, side: int) -> np.ndarray:
    return F.adaptive_avg_pool2d(x, side).flatten(1).numpy()


def fit(x: torch.Tensor, width: int, latent_dim: int, beta: float, iterations: int, batch_size: int, lr: float,
        seed: int, log=None) -> tuple[VAE, list[tuple[int, float]]]:
    """A VAE on faces `x` (N, C, S, S), Adam on (reconstruction + β·KL) / pixels. Returns the model
    and the loss curve (iteration, mean loss over the last `every` iterations)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    vae = VAE(x.shape[1], width, x.shape[-1], latent_dim)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    curve, window, every, start = [], [], max(1, iterations // 50), time.perf_counter()
    for it in range(1, iterations + 1):
        batch = x[torch.randint(len(x), (batch_size,), generator=gen)]
        out, kl = vae.sample(batch)
        loss = vae_loss(out, batch, kl, beta).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.append(loss.item())
        if it % every == 0 or it == iterations:
            curve.append((it, float(np.mean(window))))
            window = []
            if log and (it % (every * 10) == 0 or it == iterations):
                log(f"latent: beta {beta:g} iteration {it}/{iterations} loss {curve[-1][1]:.5f} "
                    f"({time.perf_counter() - start:.0f} s)")
    vae.eval()
    return vae, curve


@torch.no_grad()
def encode(vae: VAE, x: torch.Tensor, batch_size: int) -> dict:
    """Posterior means, per-pixel reconstruction MSE (of the decoded mean) and KL per face."""
    mus, mse, kls = [], [], []
    for chunk in x.split(batch_size):
        mu, logvar = vae.encode(chunk)
        mus.append(mu)
        mse.append((vae.decode(mu) - chunk).pow(2).flatten(1).mean(1))
        kls.append(kl_divergence(mu, logvar))
    return {"mu": torch.cat(mus).numpy(), "mse": float(torch.cat(mse).mean()), "kl": float(torch.cat(kls).mean())}


def pixel_probes(pixels_train: np.ndarray, pixels_test: np.ndarray, labels_train: dict, labels_test: dict,
                 seed: int) -> dict:
    """The raw-pixel reference probe's test accuracy per label (the same for every beta)."""
    return {name: round(probe(pixels_train, labels_train[name], pixels_test, y, seed), 4)
            for name, y in labels_test.items()}


def label_study(mu_train: np.ndarray, mu_test: np.ndarray, labels_train: dict, labels_test: dict,
                pixel_acc: dict, seed: int) -> dict:
    """Per label: MI per dimension, the top dimensions, MIG, latent and pixel (`pixel_probes`) probe
    accuracies, the majority-class rate (what a probe gets for free), and, for binary labels, the top
    dimension's AUC."""
    out = {}
    for name, y in labels_test.items():
        mi = mutual_information(mu_test, y, seed)
        order = np.argsort(mi)[::-1]
        row = {"mi_per_dim": [round(float(v), 4) for v in mi], "top_dims": [int(j) for j in order[:3]],
               "mig": round(mig(mi, y), 4), "entropy": round(entropy(y), 4),
               "probe_latent": round(probe(mu_train, labels_train[name], mu_test, y, seed), 4),
               "probe_pixels": pixel_acc[name],
               "majority": round(float(np.bincount(y).max() / len(y)), 4)}
        if len(np.unique(y)) == 2:
            row["top_dim_auc"] = round(auc_either_way(mu_test[:, order[0]], y), 4)
        out[name] = row
    return out


def ranked_dims(study: dict, k: int) -> list[tuple[int, str, float]]:
    """The k dimensions with the highest MI for any label: (dim, that label, MI), best first."""
    best: dict[int, tuple[str, float]] = {}
    for name, row in study.items():
        for j, v in enumerate(row["mi_per_dim"]):
            if j not in best or v > best[j][1]:
                best[j] = (name, v)
    order = sorted(best, key=lambda j: -best[j][1])[:k]
    return [(j, best[j][0], best[j][1]) for j in order]


@torch.no_grad()
def traversal(vae: VAE, faces: torch.Tensor, dims: list[int], values: np.ndarray) -> torch.Tensor:
    """(len(dims) * len(faces), len(values), C, S, S): per dim, per face, the face's posterior mean
    with that dim set to each value (others held), decoded."""
    mu = vae.encode(faces)[0]
    rows = []
    for j in dims:
        for i in range(len(faces)):
            z = mu[i].repeat(len(values), 1)
            z[:, j] = torch.as_tensor(values, dtype=z.dtype)
            rows.append(vae.decode(z))
    return torch.stack(rows)
