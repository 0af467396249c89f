"""train: competitive specialisation of the pretrained experts against the discriminator."""
import hashlib
import json

import torch

from pipeline import config, loop
from pipeline.data.tasks import CANONICAL
from pipeline.models import classifier
from pipeline.models.classifier import predict
from pipeline.io import load_torch, save_curves, save_json, save_torch
from pipeline.paths import Paths
from pipeline.runtime import images_to, log, main, setup, skip_if_unavailable


@main
def run(dataset: str) -> None:
    cfg = config.load()
    ds = cfg.dataset(dataset)
    e, tc = ds.experts, ds.train
    device = setup(cfg.seed, cfg.device)
    paths = Paths(dataset)
    if skip_if_unavailable(paths, "train", [paths.models / "trained.pt", paths.models / "train.json", paths.checkpoints,
                                              paths.plots / "train"]):
        return
    t = load_torch(paths.prepared / "tensors.pt")
    pre_path = paths.models / "pretrained.pt"
    pre = load_torch(pre_path)
    xc, xt = images_to(t["train_canonical"], device), images_to(t["train_transformed"], device)
    xv, mv = images_to(t["val_transformed"][: tc.check_size], device), t["val_transformed_mech"][: tc.check_size]

    state = loop.start(pre["bank"], e, tc, xt.shape[1], xt.shape[-1], device, cfg.seed)
    bank, disc = state.bank, state.disc

    # Resume only from a checkpoint made with these exact params and this pretrained bank.
    key = json.dumps([config.as_dict(e), config.as_dict(tc), cfg.seed, str(device)], sort_keys=True).encode()
    fingerprint = hashlib.sha256(key + pre_path.read_bytes()).hexdigest()
    ckpt = paths.checkpoints / "train.pt"
    if ckpt.exists():
        saved = load_torch(ckpt)
        if saved.get("fingerprint") == fingerprint:
            state.load_state_dict(saved["state"])
            log(f"train: resuming from {ckpt} at iteration {state.iteration}")
        else:
            log(f"train: ignoring {ckpt} (made with other params); starting afresh")

    def checkpoint(s):
        save_torch({"fingerprint": fingerprint, "state": s.state_dict()}, ckpt)

    # The evaluator watches the check batch's winners (it never touches training): MNIST digit
    # accuracy, faces share judged canonical.
    saved = load_torch(paths.models / "classifier.pt")
    clf = classifier.load(saved, xt.shape[1], xt.shape[-1], device)
    y_check = t.get("val_transformed_digit", torch.zeros(0))[: tc.check_size].to(device)

    def monitor(out):
        pred = predict(clf, out, 256)
        if saved["task"] == "digit":
            return {"classifier_acc_experts": float((pred == y_check).float().mean())}
        return {"classifier_canonical_rate": float((pred == CANONICAL).float().mean())}

    log(f"train: {e.num_experts} experts ({'batched' if bank.batched else 'per-expert'} form) on {device}, "
        f"{tc.iterations} iterations, assignment {tc.assignment}")
    loop.train(state, xc, xt, xv, mv.numpy(), len(t["mechanisms"]), tc, checkpoint, log, monitor)

    spec = state.specialized_at
    stats = {"iterations": state.iteration, "seconds": round(state.seconds, 2),
             "iters_per_second": round(state.iteration / state.seconds, 3),
             "iterations_to_specialize": spec[0] if spec else None,
             "seconds_to_specialize": round(pre["seconds"] + spec[1], 2) if spec else None,
             "pretrain_seconds": round(pre["seconds"], 2), "pretrain_iterations": pre["iterations"]}
    save_curves(paths.plots / "train", state.curves)
    save_torch({"bank": bank.cpu().state_dict(), "disc": disc.cpu().state_dict()}, paths.models / "trained.pt")
    save_json(stats, paths.models / "train.json")
    log(f"train: done; {json.dumps(stats)}")


if __name__ == "__main__":
    run()
