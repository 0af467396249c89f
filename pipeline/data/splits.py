"""Seeded, stratified, disjoint splits."""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from pipeline.errors import PipelineError

SPLITS = ("train", "val", "test")


def stratified_split(labels: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Split indices 0..N-1 into named disjoint parts, stratified by `labels`.

    `fractions` gives every part but the last its share of N; the last part takes the rest.
    """
    names = list(fractions)
    remaining = np.arange(len(labels))
    out: dict[str, np.ndarray] = {}
    left = 1.0
    for i, name in enumerate(names[:-1]):
        share = fractions[name] / left
        try:
            take, remaining = train_test_split(remaining, train_size=share, random_state=seed + i,
                                               stratify=labels[remaining])
        except ValueError as e:
            raise PipelineError(f"data: cannot split {len(labels)} samples into {names}: {e}") from e
        out[name] = np.sort(take)
        left -= fractions[name]
    out[names[-1]] = np.sort(remaining)
    return out


def balanced_assignment(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """n ids in 0..k-1 in random order, each used floor(n/k) or ceil(n/k) times."""
    return rng.permutation(np.resize(np.arange(k), n))
