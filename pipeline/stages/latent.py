"""latent: the β-VAE latent study of faces (pipeline/latent.py), one VAE per `latent.betas` on the
faces of every race in data/<ds>/raw -> reports/metrics/latent.json, reports/latent.md and the
traversal figures in reports/figures/latent/. A dataset without data (download skipped) writes
placeholders."""
import time

import numpy as np
import pandas as pd
import torch

from pipeline import config, latent, latent_report
from pipeline.data import faces
from pipeline.errors import PipelineError
from pipeline.io import atomic_path, load_json, save_json, save_text
from pipeline.paths import Paths
from pipeline.runtime import log, main, setup

LABELS = ("gender", "age", "race")


@main
def run(dataset: str) -> None:
    cfg = config.load()
    lc = cfg.latent
    paths = Paths(dataset)
    out_metrics, out_figures = paths.root / "reports/metrics/latent.json", paths.root / "reports/figures/latent"
    out_report = paths.root / "reports/latent.md"
    status = load_json(paths.raw / "status.json")
    if not status["available"]:
        save_json({"skipped": True, "reason": status["message"]}, out_metrics)
        save_text(f"# latent: skipped\n\n{status['message']}\n", out_report)
        with atomic_path(out_figures, is_dir=True) as tmp:
            (tmp / "SKIPPED.txt").write_text(status["message"] + "\n")
        return
    setup(cfg.seed, "cpu")   # small enough for a CPU; the study's numbers then never depend on a GPU
    start = time.perf_counter()
    x, labels, split = load_faces(paths, lc, cfg.seed)
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    log(f"latent: {len(x)} faces at {lc.image_size} px ({len(train)} train, {len(test)} test), "
        f"{time.perf_counter() - start:.0f} s to load")
    y_train, y_test = ({k: v[i] for k, v in labels.items()} for i in (train, test))
    pixel_acc = latent.pixel_probes(*(latent.pooled_pixels(x[i], lc.probe_pixels) for i in (train, test)),
                                    y_train, y_test, cfg.seed)
    log(f"latent: pixel probes ({lc.probe_pixels} px): {pixel_acc}")
    results, figures = {}, {}
    shown = torch.from_numpy(test[np.linspace(0, len(test) - 1, lc.traversal_faces).round().astype(int)])
    for beta in lc.betas:
        t0 = time.perf_counter()
        vae, curve = latent.fit(x[train], lc.channels, lc.latent_dim, beta, lc.iterations, lc.batch_size, lc.lr,
                                cfg.seed, log)
        enc_train, enc_test = (latent.encode(vae, x[i], lc.batch_eval) for i in (train, test))
        study = latent.label_study(enc_train["mu"], enc_test["mu"], y_train, y_test, pixel_acc, cfg.seed)
        top = latent.ranked_dims(study, lc.top_k)
        key = f"{beta:g}"
        results[key] = {"beta": beta, "recon_mse": round(enc_test["mse"], 5), "kl": round(enc_test["kl"], 3),
                        "final_loss": round(curve[-1][1], 5), "seconds": round(time.perf_counter() - t0, 1),
                        "traversal_dims": [{"dim": j, "label": name, "mi": round(mi, 4)} for j, name, mi in top],
                        "labels": study}
        figures[key] = (latent.traversal(vae, x[shown], [j for j, _, _ in top], np.linspace(-3, 3, 7)), top)
        log(f"latent: beta {key}: mse {enc_test['mse']:.5f} kl {enc_test['kl']:.2f}; " + "; ".join(
            f"{k} MIG {v['mig']:.3f} probe {v['probe_latent']:.3f} (pixels {v['probe_pixels']:.3f})"
            for k, v in study.items()))
    result = {"dataset": dataset, "image_size": lc.image_size, "n_train": len(train), "n_test": len(test),
              "latent_dim": lc.latent_dim, "iterations": lc.iterations, "labels": list(LABELS),
              "age_edges": list(lc.age_edges), "probe_pixels": lc.probe_pixels, "compare": [f"{lc.betas[0]:g}", f"{lc.betas[-1]:g}"],
              "seconds": round(time.perf_counter() - start, 1), "betas": results}
    with atomic_path(out_figures, is_dir=True) as tmp:
        for key, (grid, top) in figures.items():
            names = [f"z{j} ({name})" for j, name, _ in top]
            latent_report.traversal_figure(grid.numpy(), names, lc.traversal_faces, np.linspace(-3, 3, 7),
                                    f"beta {key}: top dimensions by MI with a label", tmp / f"traversal_beta{key}.png")
    save_json(result, out_metrics)
    save_text(latent_report.markdown(result), out_report)
    log(f"latent: done in {result['seconds']:.0f} s")


def load_faces(paths: Paths, lc: config.Latent, seed: int) -> tuple[torch.Tensor, dict, np.ndarray]:
    """Faces of every race (evenly spaced over the manifest, up to max_faces), their labels, and a
    seeded train/test split."""
    frame = pd.read_csv(paths.raw / "manifest.csv")
    frame = frame[(frame["age"] >= 0) & (frame["gender"] >= 0)].reset_index(drop=True)
    if lc.max_faces and len(frame) > lc.max_faces:
        frame = frame.iloc[np.linspace(0, len(frame) - 1, lc.max_faces).round().astype(int)].reset_index(drop=True)
    x, loaded = faces.load_images(paths.raw / "images", frame["file"].tolist(), lc.image_size)
    frame = frame.iloc[loaded].reset_index(drop=True)
    if len(frame) < 50:
        raise PipelineError(f"latent: only {len(frame)} labelled, readable faces in {paths.raw}; the study needs "
                            "at least 50 (check the download stage's manifest.csv)")
    race = np.array([faces.RACES.index(r) for r in frame["race"]])
    labels = {"gender": frame["gender"].to_numpy(np.int64),
              "age": latent.age_bins(frame["age"].to_numpy(), tuple(lc.age_edges)), "race": race}
    rng = np.random.default_rng(seed)
    split = np.where(rng.random(len(frame)) < lc.test_fraction, "test", "train")
    return x.float().div_(255.0), labels, split


if __name__ == "__main__":
    run()
