"""The restoration ceiling: how much of the experts' shortfall is the game's, and how much the architecture's?

For each mechanism, one expert of the dataset's architecture, started from the same identity-pretrained
weights as the game's experts, is trained *supervised*: MSE between its output and the untransformed
image, on the training images (both halves) under that mechanism. The game never sees such pairs, so
this is an upper bound for what the expert can restore, not a method. It is read on the test split
as the evaluate stage reads the game:
- mnist: every test digit under the mechanism (`evaluation.under_each_mechanism`, the same noise
  stream as `acc_experts_all_digits`), through an evaluator trained as the classifier stage does;
- faces_synthetic: the transformed test faces of the mechanism, PSNR to the clean face, beside the
  exact inverse's PSNR (the `psnr_ceiling` of the metrics) and the restoration fraction
  (`evaluation.mechanism_restoration`). Needs `dvc repro prepare@faces_synthetic` first.
Beside them, when the seed is params.yaml's and no --set is given, the pipeline's game on the same
test split, from reports/metrics/<dataset>.json.

    python bench/ceiling.py [--dataset mnist|faces_synthetic] [--seeds 0 1 2] [--steps 1500]
                            [--threads 2] [--json reports/bench/ceiling_<dataset>.json] [--set KEY=VALUE ...]

Each seed draws its own pretrained start (mnist: also its own split and evaluator, as the seeds
stage does); the JSON holds every seed's run and the mean and range of its headline.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from pipeline import evaluation, icm, imagemetrics, mechanisms, metrics, seeds
from pipeline.io import save_json
from pipeline.models.classifier import predict
from pipeline.runtime import log, setup
from variants import commit, configure, parse_set, tensors_for   # bench/variants.py, beside this script

HEADLINE = {"mnist": "gap_ceiling", "faces_synthetic": "restoration_min_supervised"}


def supervised(expert: torch.nn.Module, x: torch.Tensor, names: tuple, j: int, strength,
               steps: int, batch_size: int, lr: float, generator: torch.Generator) -> torch.nn.Module:
    """A copy of `expert` trained to map the images of `x` under mechanism `j` back to themselves."""
    e = copy.deepcopy(expert)
    opt = torch.optim.Adam(e.parameters(), lr=lr)
    for _ in range(steps):
        clean = x[torch.randint(len(x), (batch_size,), generator=generator)]
        loss = ((e(mechanisms.apply(names, clean, torch.full((batch_size,), j), strength)) - clean) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return e


def mnist_rows(train_one, t: dict, ds, seed: int, device) -> dict:
    """Per mechanism: the evaluator's accuracy on every test digit under it, raw and restored."""
    clf = seeds.evaluator(ds.classifier, t, seed, device)
    x_test, y = evaluation.clean_test_digits(t)
    y = y.numpy()
    acc = lambda v: metrics.accuracy(predict(clf, v, 256).numpy(), y)   # noqa: E731
    rows = {}
    for j, name, xt in evaluation.under_each_mechanism(t, evaluation.mnist_strength(ds.data, seed)):
        e = train_one(j)
        with torch.no_grad():
            out = e(xt)
        rows[name] = {"acc_input": acc(xt), "acc_ceiling": acc(out),
                      "mse_ceiling": round(float(((out - x_test) ** 2).mean()), 5)}
        log(f"ceiling {name}: {rows[name]}")
    clean, ceiling = acc(x_test), float(np.mean([r["acc_ceiling"] for r in rows.values()]))
    return {"acc_clean_all_digits": clean, "acc_ceiling_all_digits": round(ceiling, 4),
            "gap_ceiling": round(ceiling - clean, 4), "per_mechanism": rows}


def faces_rows(train_one, t: dict, strength) -> dict:
    """Per mechanism: PSNR of the test faces under it, raw, restored, and by the exact inverse."""
    names, mech = list(t["mechanisms"]), t["test_transformed_mech"].numpy()
    rows = {}
    for j, name in enumerate(names):
        sel = torch.from_numpy(mech == j)
        x, clean = t["test_transformed"][sel].float(), t["test_transformed_clean"][sel].float()
        e = train_one(j)
        with torch.no_grad():
            out = e(x)
        pin, pout = imagemetrics.psnr(x, clean), imagemetrics.psnr(out, clean)
        inverse = evaluation.ceiling_psnr(names, x, mech[mech == j], clean, strength)
        top, frac = evaluation.mechanism_restoration(pin, pout, inverse)
        rows[name] = {"psnr_inputs": round(float(pin.mean()), 3), "psnr_supervised": round(float(pout.mean()), 3),
                      "psnr_inverse": None if top is None else round(top, 3),
                      "restoration_supervised": None if frac is None else round(frac, 3)}
        log(f"ceiling {name}: {rows[name]}")
    fracs = [r["restoration_supervised"] for r in rows.values() if r["restoration_supervised"] is not None]
    return {"restoration_min_supervised": min(fracs, default=None), "per_mechanism": rows}


def run(dataset: str, ds, seed: int, steps: int, batch_size: int, lr: float) -> dict:
    device = setup(seed, "cpu")
    t = tensors_for(dataset, ds, seed)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    bank, _ = icm.pretrain_experts(ds.experts, ds.pretrain, t["train_transformed"], seed)
    bank.freeze_norm_stats()   # the competitive phase's form of the expert
    x_train = torch.cat([t["train_canonical"], t["train_transformed_clean"]]).float()
    names = tuple(t["mechanisms"])
    strength = (mechanisms.Strength(ds.data.shift, ds.data.noise_variance ** 0.5, torch.Generator().manual_seed(seed))
                if dataset == "mnist" else ds.data.strength)

    def train_one(j: int) -> torch.nn.Module:
        return supervised(bank.experts[0], x_train, names, j, strength, steps, batch_size, lr,
                          torch.Generator().manual_seed(seed * 100 + j))

    rows = mnist_rows(train_one, t, ds, seed, device) if dataset == "mnist" else faces_rows(train_one, t, strength)
    return {"seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr, **rows,
            "seconds": round(time.perf_counter() - t0, 1)}


def game_rows(dataset: str, seed: int, params_seed: int) -> dict:
    """The pipeline's per-mechanism results on the same test split, when it was run at this seed."""
    path = Path(f"reports/metrics/{dataset}.json")
    if seed != params_seed or not path.exists():
        return {}
    keys = ("acc_experts_all_digits",) if dataset == "mnist" else ("psnr_outputs", "restoration")
    return {name: {k: row.get(k) for k in keys} for name, row in json.loads(path.read_text())["per_mechanism"].items()}


def cell(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(dataset: str, r: dict, game: dict) -> str:
    if dataset == "mnist":
        lines = [f"seed {r['seed']}: clean {r['acc_clean_all_digits']:.3f}; supervised ceiling "
                 f"{r['acc_ceiling_all_digits']:.3f} ({100 * r['gap_ceiling']:+.1f} points); {r['steps']} steps",
                 f"{'mechanism':<11} {'input':>6} {'ceiling':>8} {'game':>6}"]
        lines += [f"{n:<11} {row['acc_input']:>6.3f} {row['acc_ceiling']:>8.3f} "
                  f"{cell(game.get(n, {}).get('acc_experts_all_digits'), '.3f'):>6}" for n, row in r["per_mechanism"].items()]
        return "\n".join(lines)
    lines = [f"seed {r['seed']}: supervised restoration min {cell(r['restoration_min_supervised'], '.2f')}; "
             f"{r['steps']} steps; PSNR dB",
             f"{'mechanism':<12} {'input':>6} {'inverse':>8} {'supervised':>11} {'(fraction)':>10} {'game':>6} {'(fraction)':>10}"]
    for n, row in r["per_mechanism"].items():
        g = game.get(n, {})
        lines.append(f"{n:<12} {row['psnr_inputs']:>6.2f} {cell(row['psnr_inverse'], '.2f'):>8} "
                     f"{row['psnr_supervised']:>11.2f} {cell(row['restoration_supervised'], '.2f'):>10} "
                     f"{cell(g.get('psnr_outputs'), '.2f'):>6} {cell(g.get('restoration'), '.2f'):>10}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="mnist", choices=sorted(HEADLINE))
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default: params.yaml's seed")
    ap.add_argument("--steps", type=int, default=1500, help="supervised steps per mechanism")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--json", default=None, help="default: reports/bench/ceiling_<dataset>.json")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="change the dataset's params (dotted keys under it), e.g. pretrain.max_iterations=10")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = yaml.safe_load(Path("params.yaml").read_text())
    overrides = parse_set(args.set)
    source = commit()   # the code that runs is the code of now: edits made while it runs do not count
    runs = []
    for seed in args.seeds or [params["seed"]]:
        r = run(args.dataset, configure(params, args.dataset, {}, seed, overrides), seed, args.steps,
                args.batch_size, args.lr)
        game = {} if overrides else game_rows(args.dataset, seed, params["seed"])
        runs.append({**r, "game": game})
        print(table(args.dataset, r, game), flush=True)
    key = HEADLINE[args.dataset]
    values = [r[key] for r in runs if r[key] is not None]
    summary = {"mean": round(float(np.mean(values)), 4), "min": min(values), "max": max(values)} if values else None
    save_json({"dataset": args.dataset, "commit": source, "threads": args.threads, "overrides": overrides,
               key: summary, "runs": runs}, args.json or f"reports/bench/ceiling_{args.dataset}.json")
    if summary:
        print(f"{key} over seeds {[r['seed'] for r in runs]}: mean {summary['mean']:+.4f}, "
              f"range {summary['min']:+.4f} to {summary['max']:+.4f}")


if __name__ == "__main__":
    main()
