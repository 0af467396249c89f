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
