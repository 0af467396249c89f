"""The README results table, generated from reports/metrics/*.json and checked against TARGETS.

A hand-typed table once said "no collapse ✓" beside an expert that painted every face red, so no
number or mark in it is typed: each ✓/✗ is computed from the metrics against the targets
defined once in pipeline/targets.py, and a metric absent from the JSON shows as "not measured", never as a pass.

    python -m pipeline.results [--readme README.md] [--metrics reports/metrics]
        rewrites the block between START and END in the README (atomically)
    python -m pipeline.results --check [...]
        exit 1, naming the first line that differs, if the README's block is not what the metrics give

Several seeds: `<name>_seeds.json` (the seeds stage, pipeline/seeds.py) holds `{"seeds": [0, 1, 2],
"mean": {KEY: v}, "std": {...}, "min": {...}, "max": {...}}` with dotted KEYs (e.g.
"specialization.purity_mean"); it is attached to `<name>.json` as its `seeds` and those numbers then
read `value (mean ± std, min–max)`. The marks are computed on the main chain's value itself.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from pipeline.io import save_text
from pipeline.targets import NOT_MEASURED, Missing, get, kind, mark, targets

START, END = "<!-- results:start -->", "<!-- results:end -->"
ORDER = ("mnist", "mnist_transfer", "faces", "faces_synthetic", "facearg", "latent", "debias")   # rows first in this order, then the rest by name


def num(m: dict, key: str, spec: str = ".2f") -> str:
    """The value at `key`, formatted, with the seeds' mean ± std when the file has them."""
    v = get(m, key, none_ok=False)
    text = format(v, spec)
    seeds = m.get("seeds") or {}
    mean, std = seeds.get("mean", {}).get(key), seeds.get("std", {}).get(key)
    if mean is not None and std is not None:
        s = spec if spec != "d" else ".1f"
        lo, hi = seeds.get("min", {}).get(key), seeds.get("max", {}).get(key)
        span = "" if lo is None or hi is None else f", {format(lo, s)}–{format(hi, s)}"
        missing = (seeds.get("missing") or {}).get(key)
        none = f", null in {missing}" if missing else ""
        text += f" ({format(mean, s)} ± {format(std, s)}{span}{none})"
    return text


def phrase(text: Callable[[], str], what: str) -> str:
    try:
        return text()
    except Missing:
        return f"{what}: {NOT_MEASURED}"


# --- headlines: the real values ---

def dead_phrase(m: dict) -> str:
    def text():
        dead = [k.split("_")[-1] for k, r in get(m, "per_expert").items() if r.get("dead")]
        names = f" (E{', E'.join(dead)})" if dead else ""
        return f"dead experts {num(m, 'dead_experts', 'd')}/{get(m, 'specialization.n_experts')}{names}"
    return phrase(text, "dead experts")


def spec_phrase(m: dict) -> str:
    def text():
        return (f"{num(m, 'specialization.distinct_winners', 'd')}/{num(m, 'specialization.n_mechanisms', 'd')} "
                f"distinct, purity {num(m, 'specialization.purity_mean')} (min {num(m, 'specialization.purity_min')})")
    return phrase(text, "specialisation")


def mnist_headline(m: dict) -> list[str]:
    def when():
        if get(m, "train.iterations_to_specialize") is None:
            return "never specialised"
        return (f"specialised at iteration {num(m, 'train.iterations_to_specialize', 'd')}, "
                f"{num(m, 'train.seconds_to_specialize', '.0f')} s incl. pretraining")
    acc = lambda: (f"acc clean {num(m, 'classifier.acc_clean', '.3f')} (the transformed digits before their "  # noqa: E731
                   f"mechanism: {num(m, 'classifier.acc_clean_same_digits', '.3f')}), transformed "
                   f"{num(m, 'classifier.acc_transformed', '.3f')}, experts {num(m, 'classifier.acc_experts', '.3f')}; "
                   f"every test digit under every mechanism: clean {num(m, 'classifier.acc_clean_all_digits', '.3f')}, "
                   f"experts {num(m, 'classifier.acc_experts_all_digits', '.3f')}")
    stable = lambda: f"purity min after specialising {num(m, 'train.purity_min_after_specialized')}"  # noqa: E731
    return [spec_phrase(m), phrase(when, "specialisation time"), phrase(acc, "accuracies"), dead_phrase(m),
            phrase(stable, "stability")]


def faces_headline(m: dict) -> list[str]:
    def rates():
        groups = get(m, "per_group")
        per = ", ".join(f"{g} {num(m, f'per_group.{g}.canonical_rate_outputs', '.3f')}" for g in groups)
        return (f"canonical rate {num(m, 'classifier.canonical_rate_inputs', '.3f')} → "
                f"{num(m, 'classifier.canonical_rate_outputs', '.3f')} (per group out: {per}; "
                f"evaluator test acc {num(m, 'classifier.test_acc')})")
    def gender():
        groups = get(m, "per_group")
        per = ", ".join(f"{g} {num(m, f'per_group.{g}.gender_acc_inputs', '.3f')} → "
                        f"{num(m, f'per_group.{g}.gender_acc_outputs', '.3f')}" for g in groups)
        return f"gender acc canonical {num(m, 'classifier.gender_acc_canonical', '.3f')}, in → out: {per}"
    return [spec_phrase(m), phrase(lambda: f"SSIM(input, output) {num(m, 'ssim_input_output')}", "SSIM"),
            phrase(rates, "canonical rate"), phrase(gender, "gender accuracy"), dead_phrase(m)]


def synthetic_headline(m: dict) -> list[str]:
    return [spec_phrase(m),
            phrase(lambda: f"PSNR {num(m, 'psnr_inputs')} → {num(m, 'psnr_outputs')} dB", "PSNR"),
            phrase(lambda: f"ceiling {num(m, 'psnr_ceiling')} dB", "PSNR ceiling"),
            phrase(lambda: f"restoration min {num(m, 'restoration_min')}", "restoration"),
            phrase(lambda: f"SSIM(input, output) {num(m, 'ssim_input_output')}", "SSIM"), dead_phrase(m)]


def transfer_headline(m: dict) -> list[str]:
    def ratios():
        return "MSE out/in " + ", ".join(f"{k} {v['mse_ratio']:.2f}" for k, v in get(m, "per_mechanism").items())
    return [phrase(lambda: f"{num(m, 'n_characters', 'd')} Omniglot characters; owner agreement "
                           f"{num(m, 'owner_agreement', 'd')}/{num(m, 'n_mechanisms', 'd')}, purity "
                           f"{num(m, 'purity_mean')} (min {num(m, 'purity_min')})", "transfer"),
            phrase(lambda: f"MSE {num(m, 'mse_inputs', '.4f')} → {num(m, 'mse_outputs', '.4f')}", "MSE"),
            phrase(ratios, "MSE ratios")]


def latent_headline(m: dict) -> list[str]:
    def one(key: str) -> str:
        g = get(m, f"betas.{key}.labels.gender")
        return (f"beta {key}: MSE {get(m, f'betas.{key}.recon_mse'):.4f}, KL {get(m, f'betas.{key}.kl'):.1f}, MIG "
                + "/".join(f"{get(m, f'betas.{key}.labels.{k}.mig'):.3f}" for k in ("gender", "age", "race"))
                + f", gender probe {g['probe_latent']:.3f} (pixels {g['probe_pixels']:.3f}), "
                  f"top gender dim AUC {g['top_dim_auc']:.3f}")
    return [phrase(lambda: f"{num(m, 'n_test', 'd')} test faces at {num(m, 'image_size', 'd')} px; MIG is "
                           "gender/age/race", "latent")] + [phrase(lambda k=k: one(k), f"beta {k}")
                                                           for k in get(m, "betas")]


def debias_headline(m: dict) -> list[str]:
    def one(arm: str) -> str:
        s = lambda k: get(m, f"arms.{arm}.summary.{k}")  # noqa: E731
        pm = lambda k: f"{s(k)['mean']:.3f} ± {s(k)['std']:.3f}"  # noqa: E731
        return (f"{arm}: mean {pm('mean_acc')}, worst cell {pm('worst_acc')}, gap {pm('gap')}, variance "
                f"{s('variance_pp2')['mean']:.1f} pp²")
    def mix() -> str:
        shares = get(m, "race_mix")
        top = max(shares, key=shares.get)
        return f"{shares[top]:.0%} {top}"
    def gains() -> str:
        c = get(m, "compare")
        return (f"DB-VAE vs ERM: worst cell {get(c, 'worst_gain_dbvae'):+.3f}, gap × {get(c, 'gap_ratio_dbvae'):.2f}, "
                f"mean {get(c, 'mean_change_dbvae'):+.3f}; reweighting vs ERM: worst cell {get(c, 'worst_gain_reweight'):+.3f}")
    return [phrase(lambda: f"{num(m, 'n_train', 'd')} training faces ({mix()}), "
                           f"{num(m, 'n_test', 'd')} balanced test faces; seeds {get(m, 'seed_values')}, mean ± std",
                   "debias")] + [phrase(lambda a=a: one(a), a) for a in get(m, "arms")] + [phrase(gains, "comparison")]


HEADLINES = {"debias": debias_headline, "transfer": transfer_headline, "latent": latent_headline, "mnist": mnist_headline, "faces": faces_headline, "faces_synthetic": synthetic_headline}


def dataset_cell(name: str, m: dict) -> str:
    k = kind(m)
    if k == "faces":
        what = "groups: " + ", ".join(m.get("per_group", {}))
    elif k == "transfer":
        what = "MNIST experts on Omniglot"
    elif k == "latent":
        what = "beta-VAE on faces of every race"
    elif k == "debias":
        what = "gender per race x gender: ERM, group reweighting, DB-VAE"
    elif k in ("mnist", "faces_synthetic"):
        what = f"{len(m.get('per_mechanism', {}))} mechanisms"
    else:
        return name
    seeds = (m.get("seeds") or {}).get("seeds")
    return f"{name} ({what}" + (f"; seeds {seeds}: value (mean ± std, range)" if seeds else "") + ")"


def row(name: str, m: dict) -> str:
    if kind(m) == "skipped":
        cells = [name, f"skipped: {m.get('reason', 'no reason given')}", ""]
    else:
        cells = [dataset_cell(name, m), "; ".join(HEADLINES[kind(m)](m)),
                 "; ".join(mark(label, ok) for label, ok in targets(m))]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def load(metrics_dir: Path) -> dict[str, dict]:
    """Every metrics file by name, in ORDER; a `<name>_seeds.json` becomes `<name>`'s `seeds`."""
    files = {p.stem: json.loads(p.read_text()) for p in Path(metrics_dir).glob("*.json")}
    if not files:
        raise ValueError(f"no metrics (*.json) in {metrics_dir}")
    for name in [k for k in files if k.endswith("_seeds") and k[: -len("_seeds")] in files]:
        sweep = files.pop(name)
        if not sweep.get("skipped"):
            files[name[: -len("_seeds")]]["seeds"] = sweep
    return {k: files[k] for k in sorted(files, key=lambda k: (ORDER.index(k) if k in ORDER else len(ORDER), k))}


def table(metrics: dict[str, dict]) -> str:
    """The README block (markers included)."""
    lines = [START, "| dataset | headline (test split) | targets |", "|---|---|---|"]
    lines += [row(name, m) for name, m in metrics.items()]
    lines += ["", "Generated by `python -m pipeline.results` from `reports/metrics/*.json`; the targets are "
              "`TARGETS` in `pipeline/targets.py`, and a metric absent from the JSON reads \"not measured\". "
              "`python -m pipeline.results --check` (and `tests/test_results.py`) fails when this table is stale.",
              END]
    return "\n".join(lines)


def split(text: str) -> tuple[str, str, str]:
    """(before, block, after) of a README around the markers."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"the README must hold one {START} ... {END} block")
    head, rest = text.split(START)
    block, tail = rest.split(END)
    return head, START + block + END, tail


def check(readme: Path, metrics_dir: Path) -> str | None:
    """None if the README's block is what the metrics give; else a message naming the first difference."""
    head, block, _ = split(Path(readme).read_text())
    want = table(load(metrics_dir)).splitlines()
    have = block.splitlines()
    for i, (a, b) in enumerate(zip(have + [""] * len(want), want + [""] * len(have))):
        if a != b:
            line = head.count("\n") + i + 1
            return (f"{readme}:{line}: the results table disagrees with {metrics_dir}/*.json\n"
                    f"  README:  {a or '(nothing)'}\n  metrics: {b or '(nothing)'}\n"
                    f"run `python -m pipeline.results` to regenerate it")
    return None


def update(readme: Path, metrics_dir: Path) -> bool:
    """Rewrite the README's block from the metrics (atomically). Returns whether it changed."""
    text = Path(readme).read_text()
    head, block, tail = split(text)
    new = head + table(load(metrics_dir)) + tail
    if new != text:
        save_text(new, readme)
    return new != text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.results", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the README's table is stale; write nothing")
    ap.add_argument("--readme", type=Path, default=Path("README.md"))
    ap.add_argument("--metrics", type=Path, default=Path("reports/metrics"))
    args = ap.parse_args(argv)
    try:
        if args.check:
            problem = check(args.readme, args.metrics)
            print(problem or f"{args.readme}: the results table matches {args.metrics}/*.json",
                  file=sys.stderr if problem else sys.stdout)
            return 1 if problem else 0
        changed = update(args.readme, args.metrics)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.readme}: results table {'rewritten' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
