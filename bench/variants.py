"""Specialisation recipes on MNIST: how fast do N' = 10 experts specialise under each variant?

Each variant is a set of param overrides on params.yaml. For each variant and seed this runs identity
pretraining and competitive training in-process (the pipeline's own library functions), checks the
held-out validation assignment every `check_every` iterations, and stops at the first specialised
check (or `--cap` iterations). Writes a markdown table (embedded in reports/mnist.md by the report
stage) and the raw rows as JSON.

    python bench/variants.py [--seeds 0 1] [--only NAME ...] [--threads 1] [--cap 400]
"""
from __future__ import annotations

import argparse
import dataclasses as dc
import json
import time
from pathlib import Path

import torch
import yaml

from pipeline import config, icm, loop, metrics
from pipeline.data import mnist
from pipeline.io import save_json, save_text
from pipeline.runtime import images_to, setup

PLAIN = {"mnist.train.reseed_every": 0, "mnist.train.lr_final_fraction": 1.0}
VARIANTS = {  # name -> overrides of params.yaml (dotted keys)
    "paper: argmax, lr 1e-4": {**PLAIN, "mnist.train.assignment": "argmax", "mnist.train.lr_experts": 1e-4,
                               "mnist.train.lr_discriminator": 1e-4},
    "argmax, lr 1e-3": {**PLAIN, "mnist.train.assignment": "argmax"},
    "capacity 1.5": {**PLAIN, "mnist.train.capacity_factor": 1.5},
    "capacity 1.0": {**PLAIN, "mnist.train.capacity_factor": 1.0},
    "capacity 1.0, batch 30 (exact balance)": {**PLAIN, "mnist.train.capacity_factor": 1.0,
                                               "mnist.train.batch_size": 30},
    "argmax, hog splitting": {**PLAIN, "mnist.train.assignment": "argmax", "mnist.train.reseed_every": 25},
    "capacity 1.5, hog splitting": {**PLAIN, "mnist.train.reseed_every": 25},
    "capacity 1.5, hog splitting, cosine lr decay (default)": {},
}


class Specialised(Exception):
    pass


def run_variant(params: dict, overrides: dict, seed: int, cap: int, stop: bool) -> dict:
    """One run; the lr schedule follows params' iterations, but the run ends at `cap` iterations."""
    p = json.loads(json.dumps(params))
    p["seed"] = seed
    for dotted, value in overrides.items():
        *parents, last = dotted.split(".")
        node = p
        for k in parents:
            node = node[k]
        node[last] = value
    cfg = config.from_dict(p)
    ds, device = cfg.mnist, setup(seed, "cpu")
    d, e, pc = ds.data, ds.experts, ds.pretrain
    tc = dc.replace(ds.train, checkpoint_every=ds.train.check_every)
    x, y = mnist.load_embedded() if d.source == "embedded" else mnist.load_full(Path("data/mnist/raw"))
    t, _ = mnist.prepare(x, y, d.mechanisms, d.image_size, d.test_fraction, d.val_fraction, d.shift,
                         d.noise_variance ** 0.5, seed)
    xt, xc = images_to(t["train_transformed"], device), images_to(t["train_canonical"], device)
    xv, mv = images_to(t["val_transformed"][: tc.check_size], device), t["val_transformed_mech"][: tc.check_size]
    start = time.perf_counter()
    bank, its = icm.pretrained_bank(e.num_experts, 1, e.channels, pc.shared, pc.perturb, xt, pc.lr, pc.batch_size,
                                    pc.mse_threshold, pc.max_iterations, torch.Generator().manual_seed(seed))
    pre_s = time.perf_counter() - start
    state = loop.start(bank.state_dict(), e, tc, 1, d.image_size, device, seed)

    def maybe_stop(s):
        if (stop and s.specialized_at) or s.iteration >= cap:
            raise Specialised

    try:
        loop.train(state, xc, xt, xv, mv.numpy(), len(d.mechanisms), tc, maybe_stop)
    except Specialised:
        pass
    m, _ = loop.check(state, xv, mv.numpy(), len(d.mechanisms), tc.purity_threshold, 256)
    spec = state.specialized_at
    return {"seed": seed, "pretrain_iterations": its, "pretrain_seconds": round(pre_s, 1),
            "iterations": state.iteration, "seconds_per_iteration": round(state.seconds / state.iteration, 3),
            "iterations_to_specialize": spec[0] if spec else None,
            "seconds_to_specialize": round(pre_s + spec[1], 1) if spec else None,
            "distinct_winners": metrics.distinct_winners(m),
            "purity_mean": round(float(metrics.purity(m).mean()), 3),
            "distinct_curve": [int(v) for _, v in state.curves["specialization/distinct_winners"]]}


def table(results: dict[str, list[dict]], default: str) -> str:
    lines = ["## Specialisation recipes (bench/variants.py)", "",
             "N' = 10 experts, the paper's 10 mechanisms, embedded MNIST; each run stops at its first "
             "specialised check (every mechanism a distinct dominant expert with purity >= 0.9 on held-out "
             "validation digits, argmax rule) or at the iteration cap. Seconds include identity "
             f"pretraining, single-threaded runs (two at a time). Default recipe: **{default}**.", "",
             "| variant | seed | pretrain it | iterations to specialise | seconds to specialise | "
             "distinct owners at stop | purity at stop |", "|---|---|---|---|---|---|---|"]
    for name, rows in results.items():
        for r in rows:
            lines.append(f"| {name} | {r['seed']} | {r['pretrain_iterations']} | "
                         f"{r['iterations_to_specialize'] or 'not by ' + str(r['iterations'])} | "
                         f"{r['seconds_to_specialize'] or '-'} | {r['distinct_winners']}/10 | {r['purity_mean']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    ap.add_argument("--cap", type=int, default=400, help="stop a run here even if not specialised")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-stop", action="store_true", help="run every variant to --cap")
    ap.add_argument("--out", default="reports/variants/mnist")
    ap.add_argument("--default", default="see params.yaml", help="which variant params.yaml uses")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = yaml.safe_load(Path("params.yaml").read_text())
    results = {}
    for name in args.only or VARIANTS:
        results[name] = []
        for seed in args.seeds:
            r = run_variant(params, VARIANTS[name], seed, args.cap, not args.no_stop)
            print(json.dumps({"variant": name, **r}), flush=True)
            results[name].append(r)
    save_json(results, args.out + ".json")
    save_text(table(results, args.default), args.out + ".md")


if __name__ == "__main__":
    main()
