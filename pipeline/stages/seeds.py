"""seeds: the dataset's whole chain rerun in-process for each of `seeds.values` (pipeline/seeds.py)
-> reports/metrics/<ds>_seeds.json: every run's headlines plus their mean, std and range. The README
table shows them beside the main chain's numbers."""
import numpy as np

from pipeline import config, seeds
from pipeline.errors import PipelineError
from pipeline.io import save_json
from pipeline.paths import Paths
from pipeline.runtime import log, main, setup


@main
def run(dataset: str) -> None:
    cfg = config.load()
    ds = cfg.dataset(dataset)
    if not isinstance(ds, config.MnistConfig):
        raise PipelineError(f"seeds: '{dataset}' is not an MNIST dataset; list only mnist in seeds.datasets")
    paths = Paths(dataset)
    raw = np.load(paths.raw / "mnist.npz")
    device = setup(cfg.seed, cfg.device)
    runs = []
    for i, seed in enumerate(cfg.seeds.values, 1):
        log(f"seeds: seed {seed} ({i}/{len(cfg.seeds.values)}): split, evaluator, pretraining, training, test")
        r = seeds.run_mnist(ds, raw["images"], raw["labels"], seed, device, log)
        runs.append(seeds.headlines(r, seed))
        log(f"seeds: seed {seed}: " + ", ".join(f"{k.split('.')[-1]} {v}" for k, v in runs[-1].items()))
    save_json({**seeds.summarise(runs), "runs": runs}, paths.root / "reports" / "metrics" / f"{dataset}_seeds.json")


if __name__ == "__main__":
    run()
