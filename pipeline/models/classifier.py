"""A small CNN used only as an evaluator (digit or group classifier)."""
from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    def __init__(self, channels: int, image_size: int, num_classes: int):
        super().__init__()
        side = image_size // 4
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * side * side, 128), nn.ReLU(),
            nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def load(saved: dict, channels: int, image_size: int, device) -> Classifier:
    """The classifier from the dict the classifier stage saves (models/<ds>/classifier.pt)."""
    model = Classifier(channels, image_size, saved["num_classes"])
    model.load_state_dict(saved["state"])
    return model.to(device).eval()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    model.eval()
    return torch.cat([model(chunk).argmax(1) for chunk in x.split(batch_size)])


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
        epochs: int, batch_size: int, lr: float, generator: torch.Generator, log=None) -> list[dict]:
    """Adam + cross-entropy; keeps the weights of the epoch with the best val accuracy.
    Returns one row per epoch: epoch, loss, val_acc."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best, best_state, history = -1.0, None, []
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(x), generator=generator).to(x.device)
        total = 0.0
        for idx in perm.split(batch_size):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        acc = float((predict(model, x_val, 256) == y_val).float().mean())
        history.append({"epoch": epoch, "loss": total / len(x), "val_acc": acc})
        if log:
            log(f"classifier: epoch {epoch}/{epochs} loss {total / len(x):.4f} val_acc {acc:.4f}")
        if acc > best:
            best, best_state = acc, {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return history
