"""Results as distributions: the whole MNIST chain (split, evaluator, identity pretraining,
competitive training, test metrics) run in-process once per seed, then each headline's mean, std
and range over the seeds. One seed is one draw; the seeds stage reports the spread of the draws.

Each run is the pipeline's own code on the dataset's params with only `seed` changed, so seed 0's
row repeats the main chain (on the same device and thread count it gives the same numbers).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from pipeline import config, evaluation, icm, loop
from pipeline.data import mnist
from pipeline.data.tasks import classifier_set
from pipeline.distributed import Launch
from pipeline.models.classifier import Classifier, fit
from pipeline.runtime import images_to

HEADLINES = (   # dotted keys into a run's metrics (pipeline/evaluation.py's mnist contract)
    "specialization.distinct_winners", "specialization.purity_mean", "specialization.purity_min",
    "train.iterations_to_specialize", "train.seconds_to_specialize", "train.purity_min_after_specialized",
    "classifier.acc_clean", "classifier.acc_clean_same_digits", "classifier.acc_experts",
    "classifier.acc_clean_all_digits", "classifier.acc_experts_all_digits", "dead_experts",
)


def run_mnist(ds: config.MnistConfig, images: np.ndarray, labels: np.ndarray, seed: int, device: torch.device,
              log=None) -> dict:
    """The main chain's mnist metrics for one seed (the seed drives the split, every initialisation
    and every sampled batch). The global generator is reseeded before each step, as each stage's
    process does (runtime.setup), so seed 0 repeats the main chain's draws."""
    d, e, p, tc = ds.data, ds.experts, ds.pretrain, ds.train
    t, _ = mnist.prepare(images, labels, d.mechanisms, d.image_size, d.test_fraction, d.val_fraction, d.shift,
                         math.sqrt(d.noise_variance), seed)
    t["mechanisms"] = list(d.mechanisms)
    clf = evaluator(ds.classifier, t, seed, device)

    xt, xc = images_to(t["train_transformed"], device), images_to(t["train_canonical"], device)
    torch.manual_seed(seed)                                  # the pretrain stage
    start = time.perf_counter()
    bank, its = icm.pretrain_experts(e, p, xt, seed)
    pretrain = {"iterations": its, "seconds": round(time.perf_counter() - start, 2)}
    torch.manual_seed(seed)                                  # the train stage
    state = loop.start(bank.state_dict(), e, tc, xt.shape[1], xt.shape[-1], device, seed, Launch.single())
    xv_t, mv = images_to(t["val_transformed"][: tc.check_size], device), t["val_transformed_mech"][: tc.check_size]
    loop.train(state, xc, xt, xv_t, mv.numpy(), len(d.mechanisms), tc, None, log)
    spec = state.specialized_at
    train = {"iterations": state.iteration, "seconds": round(state.seconds, 2),
             "iters_per_second": round(state.iteration / state.seconds, 3),
             "iterations_to_specialize": spec[0] if spec else None,
             "train_seconds_to_specialize": round(spec[1], 2) if spec else None,
             **loop.stability(state.curves["specialization/purity_min"], spec[0] if spec else None)}
    state.disc.eval()
    result, _ = evaluation.mnist_on_test(state.eval_bank(), state.disc, clf, t, evaluation.timing(train, pretrain),
                                         ds.evaluate.batch_size, device,
                                         evaluation.mnist_strength(d, seed))
    return result


def evaluator(c: config.Classifier, t: dict, seed: int, device: torch.device) -> Classifier:
    """The classifier stage's digit evaluator on the split `t` (canonical training digits only)."""
    torch.manual_seed(seed)
    (x, y), (xv, yv) = (classifier_set(t, s, "digit") for s in ("train", "val"))
    clf = Classifier(x.shape[1], x.shape[-1], int(y.max()) + 1).to(device, memory_format=torch.channels_last)
    fit(clf, images_to(x, device), y.to(device), images_to(xv, device), yv.to(device), c.epochs, c.batch_size, c.lr,
        torch.Generator().manual_seed(seed), None)
    return clf.eval()


def lookup(m: dict, key: str):
    for part in key.split("."):
        m = m[part]
    return m


def headlines(result: dict, seed: int) -> dict:
    """One run's row: its seed and the HEADLINES values (dotted keys)."""
    return {"seed": seed, **{key: lookup(result, key) for key in HEADLINES}}


def summarise(runs: list[dict], keys=HEADLINES) -> dict:
    """Per headline key of the `headlines` rows: mean, std (population, over the seeds that have a value), min and max.
    A key that is null in some run (e.g. never specialised) is summarised over the others, and
    `missing` counts the runs without it, so a failed seed is never averaged away silently."""
    out = {"seeds": [r["seed"] for r in runs], "mean": {}, "std": {}, "min": {}, "max": {}, "missing": {}}
    for key in keys:
        values = [r[key] for r in runs]
        got = np.array([v for v in values if v is not None], dtype=float)
        out["missing"][key] = len(values) - len(got)
        if len(got):
            out["mean"][key] = round(float(got.mean()), 4)
            out["std"][key] = round(float(got.std()), 4)
            out["min"][key], out["max"][key] = round(float(got.min()), 4), round(float(got.max()), 4)
    return out
