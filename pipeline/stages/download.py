"""download: fetch the raw dataset into data/<ds>/raw (MNIST digits, or a face archive extracted and
scanned; FaceARG absent -> a status file that makes the later FaceARG stages skip)."""
import os

import numpy as np

from pipeline import config
from pipeline.data import facesets, mnist
from pipeline.io import atomic_path, save_json
from pipeline.paths import Paths
from pipeline.runtime import log, main

MIRROR_ENV = "ICM_DATA_MIRROR"


@main
def run(dataset: str) -> None:
    ds = config.load().dataset(dataset)
    paths = Paths(dataset)
    with atomic_path(paths.raw, is_dir=True) as tmp:
        if isinstance(ds, config.MnistConfig):
            x, y = mnist.load(ds.data.source, tmp / "torchvision")
            np.savez_compressed(tmp / "mnist.npz", images=x, labels=y)
            status = {"available": True, "message": f"{len(x)} {ds.data.source} digits"}
        else:
            status = facesets.acquire(ds.data.source, os.environ.get(MIRROR_ENV) or ds.data.source.mirror, tmp, log)
        save_json(status, tmp / "status.json")
    log(f"download: {status['message']} -> {paths.raw}")
    if status.get("skipped"):
        log(f"download: skipped files by reason: {status['skipped']} (listed in {paths.raw / 'skipped.csv'})")


if __name__ == "__main__":
    run()
