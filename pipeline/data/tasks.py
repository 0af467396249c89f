"""What the evaluator classifier learns from the prepared tensors of each kind of dataset."""
from __future__ import annotations

import torch

TASKS = ("digit", "canonical")   # MNIST: the digit; faces: canonical (1) vs transformed (0)
CANONICAL = 1


def classifier_set(t: dict, split: str, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of `split` for the classifier of `task` (see TASKS)."""
    if task == "digit":   # canonical digits only: the evaluator never sees a mechanism
        return t[f"{split}_canonical"], t[f"{split}_canonical_digit"]
    canon, trans = t[f"{split}_canonical"], t[f"{split}_transformed"]
    labels = torch.cat([torch.full((len(canon),), CANONICAL), torch.full((len(trans),), 1 - CANONICAL)])
    return torch.cat([canon, trans]), labels


def gender_set(t: dict, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical faces of `split` with a known gender label (0 male, 1 female), for the robustness
    probe: a gender classifier that has only ever seen the canonical group."""
    g = t[f"{split}_canonical_gender"]
    known = g >= 0
    return t[f"{split}_canonical"][known], g[known]
