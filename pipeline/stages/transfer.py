"""transfer: the MNIST-trained experts on Omniglot characters under the same mechanisms ->
reports/metrics/<ds>_transfer.json and reports/figures/<ds>_transfer/samples.png (pipeline/transfer.py).
Without the Omniglot archives (no mirror) both outputs say why, and the stage succeeds."""
import os

import torch

from pipeline import config, loop, report, transfer
from pipeline.data import omniglot
from pipeline.errors import PipelineError
from pipeline.io import atomic_path, load_json, load_torch, save_json
from pipeline.paths import Paths
from pipeline.runtime import log, main, setup

MIRROR_ENV = "ICM_DATA_MIRROR"
PER_MECHANISM = 2      # figure rows per mechanism


@main
def run(dataset: str) -> None:
    cfg = config.load()
    ds, tc = cfg.dataset(dataset), cfg.transfer
    if not isinstance(ds, config.MnistConfig):
        raise PipelineError(f"transfer: '{dataset}' is not an MNIST dataset; list only mnist in transfer.datasets")
    paths = Paths(dataset)
    out_metrics = paths.root / "reports" / "metrics" / f"{dataset}_transfer.json"
    out_figures = paths.root / "reports" / "figures" / f"{dataset}_transfer"
    files, why = omniglot.find(os.environ.get(MIRROR_ENV) or tc.mirror, tc.archives)
    if not files:
        msg = f"{why}; the transfer stage needs the Omniglot zips (see ../shared/datasets/README.md)"
        save_json({"skipped": True, "reason": msg}, out_metrics)
        with atomic_path(out_figures, is_dir=True) as tmp:
            (tmp / "SKIPPED.txt").write_text(msg + "\n")
        log(f"transfer: skipped: {msg}")
        return
    device = setup(cfg.seed, cfg.device)
    d = ds.data
    clean = omniglot.load(files, tc.sha256, tc.max_images)
    pad = (d.image_size - clean.shape[-1]) // 2
    clean = torch.nn.functional.pad(clean, (pad,) * 4) if pad else clean
    log(f"transfer: {len(clean)} Omniglot characters from {', '.join(f.name for f in files)}")
    trained = load_torch(paths.models / "trained.pt")
    bank, disc = loop.build(ds.experts, 1, d.image_size, device, trained["bank"], trained["disc"],
                            ds.train.spectral_norm)
    disc.eval()
    owners = {k: v["dominant_expert"] for k, v in load_json(paths.metrics)["per_mechanism"].items()}
    result, t = transfer.run(bank, disc, clean, d.mechanisms, d.shift, d.noise_variance ** 0.5, cfg.seed,
                             owners, tc.batch_size, device)
    save_json(result, out_metrics)
    rows = report.pick_examples(t["mech"].numpy(), None, len(d.mechanisms), PER_MECHANISM)
    with torch.no_grad():
        outs = bank.forward_all(t["x"][rows].to(device)).cpu().float()
    with atomic_path(out_figures, is_dir=True) as tmp:
        report.sample_grid_figure(t["clean"][rows].numpy(), t["x"][rows].numpy(), outs.numpy(),
                                  t["owner"][rows].numpy(), [d.mechanisms[int(t["mech"][r])] for r in rows],
                                  "Omniglot", tmp / "samples.png")
    log(f"transfer: owner agreement {result['owner_agreement']}/{result['n_mechanisms']}, purity "
        f"{result['purity_mean']:.2f} (min {result['purity_min']:.2f}), MSE {result['mse_inputs']:.4f} -> "
        f"{result['mse_outputs']:.4f}")


if __name__ == "__main__":
    run()
