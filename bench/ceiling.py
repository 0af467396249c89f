"""The restoration ceiling on mnist: how much of the experts' accuracy gap is the game's?

For each mechanism, one paper expert, started from the same identity-pretrained weights as the
game's experts, is trained *supervised*: MSE between its output and the untransformed digit, on the
training digits (both halves) under that mechanism, fresh noise every step. The game never sees
such pairs, so this is an upper bound for what the expert architecture can restore, not a method.
It is read like the evaluate stage's `acc_experts_all_digits` (`evaluation.every_mechanism`):
every test digit under the mechanism, the same noise stream, the same evaluator recipe (trained
here as the classifier stage does). Beside it, when the seed is params.yaml's, the pipeline's game
on the same digits, from reports/metrics/mnist.json.

    python bench/ceiling.py [--seeds 0 1 2] [--steps 1500] [--threads 2] [--json reports/bench/ceiling.json]
                            [--set KEY=VALUE ...]

Each seed draws its own split, evaluator and pretrained start, as the seeds stage does; the JSON
holds every seed's run and the mean and range of the ceiling's gap to clean.
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

from pipeline import evaluation, icm, mechanisms, metrics, seeds
from pipeline.io import save_json
from pipeline.models.classifier import predict
from pipeline.runtime import log, setup
from variants import commit, configure, parse_set, tensors_for   # bench/variants.py, beside this script


def supervised(expert: torch.nn.Module, x: torch.Tensor, names: tuple, j: int, strength: mechanisms.Strength,
               steps: int, batch_size: int, lr: float, generator: torch.Generator) -> torch.nn.Module:
    """A copy of `expert` trained to map the digits of `x` under mechanism `j` back to themselves."""
    e = copy.deepcopy(expert)
    opt = torch.optim.Adam(e.parameters(), lr=lr)
    for _ in range(steps):
        clean = x[torch.randint(len(x), (batch_size,), generator=generator)]
        loss = ((e(mechanisms.apply(names, clean, torch.full((batch_size,), j), strength)) - clean) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return e


def game_rows(seed: int, params_seed: int) -> dict:
    """The pipeline's per-mechanism accuracy on the same digits, when it was run at this seed."""
    path = Path("reports/metrics/mnist.json")
    if seed != params_seed or not path.exists():
        return {}
    per = json.loads(path.read_text())["per_mechanism"]
    return {name: row.get("acc_experts_all_digits") for name, row in per.items()}


def run(ds, seed: int, steps: int, batch_size: int, lr: float) -> dict:
    device = setup(seed, "cpu")
    t = tensors_for("mnist", ds, seed)
    clf = seeds.evaluator(ds.classifier, t, seed, device)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    bank, _ = icm.pretrain_experts(ds.experts, ds.pretrain, t["train_transformed"], seed)
    bank.freeze_norm_stats()   # the competitive phase's form of the expert
    x_train = torch.cat([t["train_canonical"], t["train_transformed_clean"]])
    names = tuple(t["mechanisms"])
    x_test, y = evaluation.test_digits(t)
    clean = metrics.accuracy(predict(clf, x_test, 256).numpy(), y.numpy())
    train_strength = mechanisms.Strength(ds.data.shift, ds.data.noise_variance ** 0.5,
                                         torch.Generator().manual_seed(seed))
    rows = {}
    for j, name, xt in evaluation.under_each_mechanism(t, evaluation.mnist_strength(ds.data, seed)):
        e = supervised(bank.experts[0], x_train, names, j, train_strength, steps, batch_size, lr,
                       torch.Generator().manual_seed(seed * 100 + j))
        with torch.no_grad():
            out = e(xt)
        rows[name] = {"acc_input": metrics.accuracy(predict(clf, xt, 256).numpy(), y.numpy()),
                      "acc_ceiling": metrics.accuracy(predict(clf, out, 256).numpy(), y.numpy()),
                      "mse_ceiling": round(float(((out - x_test) ** 2).mean()), 5)}
        log(f"ceiling {name}: {rows[name]}")
    ceiling = float(np.mean([r["acc_ceiling"] for r in rows.values()]))
    return {"seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr, "acc_clean_all_digits": clean,
            "acc_ceiling_all_digits": round(ceiling, 4), "gap_ceiling": round(ceiling - clean, 4),
            "per_mechanism": rows, "seconds": round(time.perf_counter() - t0, 1)}


def table(r: dict, game: dict) -> str:
    lines = [f"clean {r['acc_clean_all_digits']:.3f}; supervised ceiling {r['acc_ceiling_all_digits']:.3f} "
             f"(gap {100 * r['gap_ceiling']:+.1f} points); {r['steps']} steps of batch {r['batch_size']}, seed {r['seed']}",
             f"{'mechanism':<11} {'input':>6} {'ceiling':>8} {'game':>6}"]
    for name, row in r["per_mechanism"].items():
        g = game.get(name)
        lines.append(f"{name:<11} {row['acc_input']:>6.3f} {row['acc_ceiling']:>8.3f} "
                     f"{'-' if g is None else format(g, '.3f'):>6}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default: params.yaml's seed")
    ap.add_argument("--steps", type=int, default=1500, help="supervised steps per mechanism")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--json", default="reports/bench/ceiling.json")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="change mnist params (dotted keys under mnist:), e.g. pretrain.max_iterations=10")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = yaml.safe_load(Path("params.yaml").read_text())
    overrides = parse_set(args.set)
    runs = []
    for seed in args.seeds or [params["seed"]]:
        r = run(configure(params, "mnist", {}, seed, overrides), seed, args.steps, args.batch_size, args.lr)
        game = {} if overrides else game_rows(seed, params["seed"])
        runs.append({**r, "game_acc_experts_all_digits": game})
        print(table(r, game), flush=True)
    gaps = [r["gap_ceiling"] for r in runs]
    summary = {"mean": round(float(np.mean(gaps)), 4), "min": min(gaps), "max": max(gaps)}
    save_json({"commit": commit(), "threads": args.threads, "overrides": overrides, "gap_ceiling": summary,
               "runs": runs}, args.json)
    print(f"gap ceiling - clean over seeds {[r['seed'] for r in runs]}: mean {100 * summary['mean']:+.1f} points, "
          f"range {100 * summary['min']:+.1f} to {100 * summary['max']:+.1f}")


if __name__ == "__main__":
    main()
