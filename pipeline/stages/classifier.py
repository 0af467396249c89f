"""classifier: the evaluator CNN (MNIST: digits, on canonical training digits only; faces: canonical
vs transformed group), trained on the train split with its checkpoint picked on val."""
import torch

from pipeline import config
from pipeline.data.tasks import classifier_set, gender_set
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
    saved = {"state": model.state_dict(), "num_classes": classes, "task": task, "val_acc": val_acc,
             "test_acc": test_acc, "history": history, "gender": None}
    log(f"classifier ({task}): best val_acc {val_acc:.4f}, its test_acc {test_acc:.4f}")
    if task == "canonical" and ds.data.mode == "demographic" and "train_canonical_gender" in t:
        saved["gender"] = fit_gender(t, c, device, gen)
    save_torch(saved, paths.models / "classifier.pt")


def fit_gender(t: dict, c: config.Classifier, device, gen: torch.Generator) -> dict:
    """The robustness probe (faces, demographic): a gender classifier trained on canonical faces only,
    the same CNN and schedule as the evaluator, checkpoint picked on canonical val faces."""
    (x, y), (xv, yv), (xt, yt) = (gender_set(t, s) for s in ("train", "val", "test"))
    x, xv, xt = (images_to(a, device) for a in (x, xv, xt))
    y, yv, yt = y.to(device), yv.to(device), yt.to(device)
    model = Classifier(x.shape[1], x.shape[-1], 2).to(device, memory_format=torch.channels_last)
    fit(model, x, y, xv, yv, c.epochs, c.batch_size, c.lr, gen, log)
    val_acc = float((predict(model, xv, 256) == yv).float().mean())
    test_acc = float((predict(model, xt, 256) == yt).float().mean())
    log(f"classifier (gender, canonical faces only): best val_acc {val_acc:.4f}, canonical test_acc {test_acc:.4f}")
    return {"state": model.state_dict(), "num_classes": 2, "val_acc": val_acc, "test_acc": test_acc}


if __name__ == "__main__":
    run()
