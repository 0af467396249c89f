"""classifier: the evaluator CNN, trained on the canonical training split only (val for selection)."""
import torch

from pipeline import config
from pipeline.io import load_torch, save_torch
from pipeline.models.classifier import Classifier, fit, predict
from pipeline.paths import Paths
from pipeline.runtime import images_to, log, main, setup


@main
def run(dataset: str) -> None:
    cfg = config.load()
    c = cfg.dataset(dataset).classifier
    device = setup(cfg.seed, cfg.device)
    paths = Paths(dataset)
    t = load_torch(paths.prepared / "tensors.pt")
    x, y = images_to(t["train_canonical"], device), t["train_canonical_digit"].to(device)
    xv, yv = images_to(t["val_canonical"], device), t["val_canonical_digit"].to(device)
    model = Classifier(x.shape[1], x.shape[-1], int(y.max()) + 1).to(device, memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = fit(model, x, y, xv, yv, c.epochs, c.batch_size, c.lr, gen, log)
    val_acc = float((predict(model, xv, 256) == yv).float().mean())
    save_torch({"state": model.state_dict(), "num_classes": int(y.max()) + 1, "val_acc": val_acc,
                "history": history}, paths.models / "classifier.pt")
    log(f"classifier: best val_acc {val_acc:.4f}")


if __name__ == "__main__":
    run()
