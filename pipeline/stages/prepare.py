"""prepare: stratified canonical/transformed splits (mechanisms applied where synthetic), plus a manifest."""
import math

import numpy as np
import torch

from pipeline import config
from pipeline.data import facesets, mnist
from pipeline.io import atomic_path
from pipeline.paths import Paths
from pipeline.runtime import log, main, skip_if_unavailable


@main
def run(dataset: str) -> None:
    cfg = config.load()
    ds = cfg.dataset(dataset)
    paths = Paths(dataset)
    if skip_if_unavailable(paths, "prepare", [paths.prepared]):
        return
    d = ds.data
    if isinstance(ds, config.MnistConfig):
        raw = np.load(paths.raw / "mnist.npz")
        tensors, manifest = mnist.prepare(
            raw["images"], raw["labels"], d.mechanisms, d.image_size, d.test_fraction, d.val_fraction,
            d.shift, math.sqrt(d.noise_variance), cfg.seed)
        tensors["mechanisms"] = list(d.mechanisms)
    else:
        tensors, manifest = facesets.prepare(paths.raw, d, cfg.seed)
    with atomic_path(paths.prepared, is_dir=True) as tmp:
        torch.save(tensors, tmp / "tensors.pt")
        manifest.to_csv(tmp / "manifest.csv", index=False)
    log("prepare: " + ", ".join(f"{k}={len(v)}" for k, v in tensors.items()
                                if k.endswith(("canonical", "transformed"))))


if __name__ == "__main__":
    run()
