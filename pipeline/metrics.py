"""Assignment matrix, purity, distinct winners and accuracies (pure functions on arrays)."""
from __future__ import annotations

import numpy as np


def assignment_matrix(mechanism: np.ndarray, winner: np.ndarray, n_mech: int, n_experts: int) -> np.ndarray:
    """counts[j, i] = samples of mechanism j won by expert i."""
    m = np.zeros((n_mech, n_experts), dtype=np.int64)
    np.add.at(m, (np.asarray(mechanism), np.asarray(winner)), 1)
    return m


def purity(matrix: np.ndarray) -> np.ndarray:
    """Per mechanism: the share of its samples won by its most frequent expert (nan if no samples)."""
    totals = matrix.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, matrix.max(1) / np.maximum(totals, 1), np.nan)


def dominant(matrix: np.ndarray) -> np.ndarray:
    return matrix.argmax(1)


def distinct_winners(matrix: np.ndarray) -> int:
    """Mechanisms whose most frequent winner is the most frequent winner of no other mechanism."""
    dom = dominant(matrix)
    counts = np.bincount(dom, minlength=matrix.shape[1])
    return int((counts[dom] == 1).sum())


def specialized(matrix: np.ndarray, threshold: float) -> bool:
    """Every mechanism has a distinct dominant expert with purity >= threshold."""
    return distinct_winners(matrix) == matrix.shape[0] and bool(np.all(purity(matrix) >= threshold))


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    return float((np.asarray(pred) == np.asarray(target)).mean())
