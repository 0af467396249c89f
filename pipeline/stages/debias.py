"""debias: ERM, group reweighting and DB-VAE gender classifiers on a race-skewed UTKFace sample,
tested per race x gender (pipeline/debias.py) -> reports/metrics/debias.json, reports/debias.md
and reports/figures/debias/cells.png. A dataset without data (download skipped) writes placeholders."""
import time

import numpy as np
import pandas as pd

from pipeline import config, debias, debias_report
from pipeline.data import faces
from pipeline.errors import PipelineError
from pipeline.io import atomic_path, load_json, save_json, save_text
from pipeline.paths import Paths
from pipeline.runtime import log, main, setup


@main
def run(dataset: str) -> None:
    cfg = config.load()
    p = cfg.debias
    paths = Paths(dataset)
    out_metrics, out_figures = paths.root / "reports/metrics/debias.json", paths.root / "reports/figures/debias"
    out_report = paths.root / "reports/debias.md"
    status = load_json(paths.raw / "status.json")
    if not status["available"]:
        save_json({"skipped": True, "reason": status["message"]}, out_metrics)
        save_text(f"# debias: skipped\n\n{status['message']}\n", out_report)
        with atomic_path(out_figures, is_dir=True) as tmp:
            (tmp / "SKIPPED.txt").write_text(status["message"] + "\n")
        return
    setup(cfg.seed, "cpu")   # small enough for a CPU; the numbers then never depend on a GPU
    start = time.perf_counter()
    x, y, groups, train, test = load_faces(paths, p, cfg.seed)
    log(f"debias: {len(train)} training and {len(test)} test faces at {p.image_size} px "
        f"({time.perf_counter() - start:.0f} s to load)")
    arms = {arm: {"runs": []} for arm in p.arms}
    for seed in p.seeds:
        for arm in p.arms:
            t0 = time.perf_counter()
            model, drawn = debias.train_arm(arm, x[train], y[train], groups[train], p, seed, log)
            prob, _ = debias.encode(model, x[test], p.batch_eval)
            row = debias.cell_metrics((prob > 0.5).astype(np.int64), y[test], groups[test])
            row.update(seed=seed, seconds=round(time.perf_counter() - t0, 1), drawn_last_epoch=drawn)
            arms[arm]["runs"].append(row)
            log(f"debias: seed {seed} {arm}: mean {row['mean_acc']:.3f} worst {row['worst_acc']:.3f} "
                f"({row['worst_cell']}) gap {row['gap']:.3f} ({row['seconds']:.0f} s)")
    for a in arms.values():
        a["summary"] = debias.summarise(a["runs"])
    train_counts = pd.Series(groups[train]).value_counts().sort_index()
    result = {"dataset": dataset, "image_size": p.image_size, "race_mix": dict(p.race_mix),
              "n_train": int(len(train)), "n_test": int(len(test)), "test_per_cell": p.test_per_cell,
              "train_cells": {k: int(v) for k, v in train_counts.items()}, "epochs": p.epochs,
              "seed_values": list(p.seeds), "rule": p.rule, "bins": p.bins, "alpha": p.alpha,
              "arms": arms, "compare": debias.compare(arms), "seconds": round(time.perf_counter() - start, 1)}
    with atomic_path(out_figures, is_dir=True) as tmp:
        debias_report.cells_figure(result, tmp / "cells.png")
    save_json(result, out_metrics)
    save_text(debias_report.markdown(result), out_report)
    log(f"debias: done in {result['seconds']:.0f} s")


def load_faces(paths: Paths, p: config.Debias, seed: int):
    """Faces (float, [0, 1]), gender, race x gender names, and the train / test indices into them."""
    frame = pd.read_csv(paths.raw / "manifest.csv")
    frame = frame[(frame["gender"] >= 0) & frame["race"].isin(list(p.race_mix))].reset_index(drop=True)
    train, test = debias.skewed_split(frame["race"].to_numpy(), frame["gender"].to_numpy(), dict(p.race_mix),
                                      p.train_size, p.test_per_cell, np.random.default_rng(seed))
    pick = np.concatenate([train, test])
    x, loaded = faces.load_images(paths.raw / "images", frame["file"].iloc[pick].tolist(), p.image_size)
    if len(loaded) < len(pick):
        raise PipelineError(f"debias: {len(pick) - len(loaded)} of the chosen faces in {paths.raw / 'images'} "
                            "could not be read; rerun the download stage (`dvc repro -f download@<ds>`)")
    rows = frame.iloc[pick]
    gender = rows["gender"].to_numpy(np.int64)
    groups = np.array([debias.cell_name(r, g) for r, g in zip(rows["race"], gender)])
    n = len(train)
    return x.float().div_(255.0), gender, groups, np.arange(n), np.arange(n, len(pick))


if __name__ == "__main__":
    run()
