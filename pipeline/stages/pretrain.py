"""pretrain: initialise the experts to approximately the identity on the transformed data."""
import time

import torch

from pipeline import config, icm
from pipeline.io import load_torch, save_json, save_torch
from pipeline.paths import Paths
from pipeline.runtime import images_to, log, main, setup, skip_if_unavailable
from pipeline.tracking import LiveCurves


@main
def run(dataset: str) -> None:
    cfg = config.load()
    ds = cfg.dataset(dataset)
    e, p = ds.experts, ds.pretrain
    device = setup(cfg.seed, cfg.device)
    paths = Paths(dataset)
    if skip_if_unavailable(paths, "pretrain", [paths.models / "pretrained.pt", paths.models / "pretrain.json",
                                                  paths.plots / "pretrain"]):
        return
    x = images_to(load_torch(paths.prepared / "tensors.pt")["train_transformed"], device)
    curve = []
    live = LiveCurves(paths.plots / "pretrain")   # dvclive: plots/metrics/mse.tsv and metrics.json

    def progress(it, losses):
        curve.append((it, sum(losses) / len(losses)))
        if it % 25 == 0:
            log(f"pretrain: iteration {it} loss {curve[-1][1]:.5f}")
            live.update({"mse": curve}, it)

    start = time.perf_counter()
    bank, its = icm.pretrain_experts(e, p, x, cfg.seed, progress)
    seconds = time.perf_counter() - start
    reached = curve[-1][1] < p.mse_threshold
    log(f"pretrain: {its} iterations, {seconds:.1f} s, mse {curve[-1][1]:.5f}"
        + ("" if reached else f" (cap reached before mse {p.mse_threshold})"))
    live.close({"mse": curve}, its)
    # Weights only: the same params give the same file, so a rerun does not force a train rerun.
    # The wall-clock time goes beside it (read by evaluate, not by train).
    save_torch({"bank": bank.cpu().state_dict()}, paths.models / "pretrained.pt")
    save_json({"iterations": its, "seconds": round(seconds, 2), "mse": curve[-1][1]}, paths.models / "pretrain.json")


if __name__ == "__main__":
    run()
