"""classifier: the evaluator CNN (MNIST: digits, on canonical training digits only; faces: canonical
vs transformed group), trained on the train split with its checkpoint picked on val."""
import torch

from pipeline import config
from pipeline.data.tasks import classifier_set
from pipeline.io import load_torch, save_torch
from pipeline.models.classifier import Classifier, fit, predict
from pipeline.paths import Paths
from pipeline.runtime import images_to, log, main, setup, skip_if_unavailable


@main
def run(dataset: str) -> None:
    cfg = config.load()
    ds = cfg.dataset(dataset)
    paths = Paths(dataset)
    if skip_if_unavailable(paths, "classifier", [paths.models / "classifier.pt"]):
        return
    c = ds.classifier
    device = setup(cfg.seed, cfg.device)
    task = "digit" if isinstance(ds, config.MnistConfig) else "canonical"
    t = load_torch(paths.prepared / "tensors.pt")
    (x, y), (xv, yv), (xt, yt) = (classifier_set(t, s, task) for s in ("train", "val", "test"))
    x, xv, xt = (images_to(a, device) for a in (x, xv, xt))
    y, yv, yt = y.to(device), yv.to(device), yt.to(device)
    classes = int(y.max()) + 1
    model = Classifier(x.shape[1], x.shape[-1], classes).to(device, memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = fit(model, x, y, xv, yv, c.epochs, c.batch_size, c.lr, gen, log)
    val_acc = float((predict(model, xv, 256) == yv).float().mean())
    test_acc = float((predict(model, xt, 256) == yt).float().mean())
    save_torch({"state": model.state_dict(), "num_classes": classes, "task": task, "val_acc": val_acc,
                "test_acc": test_acc, "history": history}, paths.models / "classifier.pt")
    log(f"classifier ({task}): best val_acc {val_acc:.4f}, its test_acc {test_acc:.4f}")


if __name__ == "__main__":
    run()
