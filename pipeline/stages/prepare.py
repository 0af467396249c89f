"""prepare: stratified canonical/transformed splits with mechanisms applied, plus a manifest."""
import math

import numpy as np

from pipeline import config
from pipeline.data import mnist
from pipeline.io import atomic_path
from pipeline.paths import Paths
from pipeline.runtime import log, main


@main
def run(dataset: str) -> None:
    cfg = config.load()
    d = cfg.dataset(dataset).data
    paths = Paths(dataset)
    raw = np.load(paths.raw / "mnist.npz")
    tensors, manifest = mnist.prepare(
        raw["images"], raw["labels"], d.mechanisms, d.image_size, d.test_fraction, d.val_fraction,
        d.shift, math.sqrt(d.noise_variance), cfg.seed)
    tensors["mechanisms"] = list(d.mechanisms)
    import torch
    with atomic_path(paths.prepared, is_dir=True) as tmp:
        torch.save(tensors, tmp / "tensors.pt")
        manifest.to_csv(tmp / "manifest.csv", index=False)
    log("prepare: " + ", ".join(f"{k}={len(v)}" for k, v in tensors.items()
                                if k.endswith(("canonical", "transformed"))))


if __name__ == "__main__":
    run()
