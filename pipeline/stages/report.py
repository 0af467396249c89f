"""report: figures under reports/figures/<ds>/ and the markdown report reports/<ds>.md."""
import pandas as pd
import torch

from pipeline import config, loop, metrics, report, targets
from pipeline.io import atomic_path, load_json, load_torch, save_text
from pipeline.paths import Paths
from pipeline.runtime import log, main, setup, skip_if_unavailable
from pipeline.tracking import read_curves

VARIANTS = "reports/variants/{dataset}.md"   # written by bench/variants*.py, embedded when present


@main
def run(dataset: str) -> None:
    cfg = config.load()
    ds = cfg.dataset(dataset)
    device = setup(cfg.seed, "cpu")
    paths = Paths(dataset)
    if skip_if_unavailable(paths, "report", [paths.figures, paths.report]):
        return
    t = load_torch(paths.prepared / "tensors.pt")
    names = t["mechanisms"]
    result = load_json(paths.metrics)
    assign = pd.read_csv(paths.plots / "assignment.csv")
    matrix = metrics.assignment_matrix(assign["mechanism"].map(names.index).to_numpy(),
                                       assign["expert"].to_numpy(), len(names), ds.experts.num_experts)
    # Held-out samples per mechanism (MNIST: one, of digit j mod 10 where there is one; faces: two),
    # through every expert.
    mech, digit = t["test_transformed_mech"].numpy(), t.get("test_transformed_digit")
    rows = report.pick_examples(mech, None if digit is None else digit.numpy(), len(names), 1 if digit is not None else 2)
    trained = load_torch(paths.models / "trained.pt")
    bank, disc = loop.build(ds.experts, *t["test_transformed"].shape[1::2], device, trained["bank"], trained["disc"],
                           ds.train.spectral_norm)
    disc.eval()
    x = t["test_transformed"][rows]
    with torch.no_grad():
        outs = bank.forward_all(x)
        win = disc(outs.flatten(0, 1)).view(len(rows), bank.n).argmax(1)

    with atomic_path(paths.figures, is_dir=True) as tmp:
        report.curves_figure(read_curves(paths.plots / "train"), bank.n, tmp / "curves.png")
        report.heatmap_figure(matrix, names, tmp / "assignment.png", "held-out test: mechanism x winner")
        paired = "test_transformed_clean" in t   # else: unpaired canonical faces for comparison
        first = t["test_transformed_clean"][rows] if paired else t["test_canonical"][: len(rows)]
        report.sample_grid_figure(first.numpy(), x.numpy(), outs.numpy(), win.numpy(), [names[mech[r]] for r in rows],
                                  "original" if paired else "canonical", tmp / "samples.png",
                                  report.dead_experts(result, bank.n))
    rel = paths.figures.relative_to(paths.report.parent)
    figs = {"training curves": f"{rel}/curves.png", "assignment heatmap": f"{rel}/assignment.png",
            "samples (winner framed red; dead experts titled in red)": f"{rel}/samples.png"}
    variants = paths.root / VARIANTS.format(dataset=dataset)
    extra = variants.read_text() if variants.exists() else ""
    marks = [targets.mark(label, ok) for label, ok in targets.targets(result)]
    save_text(report.markdown(f"ICM on {dataset}", result, figs, extra, marks), paths.report)
    log(f"report: {paths.report} and {len(figs)} figures in {paths.figures}")


if __name__ == "__main__":
    run()
