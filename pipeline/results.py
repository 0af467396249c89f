"""The README results table, generated from reports/metrics/*.json and checked against TARGETS.

A hand-typed table once said "no collapse ✓" beside an expert that painted every face red, so no
number or mark in it is typed: each ✓/✗ is computed here from the metrics against the targets
defined once below, and a metric absent from the JSON shows as "not measured", never as a pass.

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
import math
import sys
from pathlib import Path
from typing import Callable

from pipeline.io import save_text

START, END = "<!-- results:start -->", "<!-- results:end -->"
ORDER = ("mnist", "mnist_transfer", "faces", "faces_synthetic", "facearg", "latent", "debias")   # rows first in this order, then the rest by name
NOT_MEASURED = "not measured"

TARGETS = {   # from the issues; the only place they are defined
    "mnist": {"seconds_to_specialize_max": 300, "distinct_share_min": 0.8, "acc_drop_max": 0.02, "dead_max": 0,
              "stable_purity_min": 0.9},
    "faces": {"distinct_share_min": 1.0, "canonical_rate_min": 0.5, "ssim_min": 0.6, "dead_max": 0},
    "transfer": {"agreement_share_min": 0.9, "mse_ratio_max": 0.5, "mse_ratio_max_noise": 1.0},
    "latent": {"mse_ratio_max": 1.5, "gender_auc_min": 0.75, "seconds_max": 900},
    "debias": {"worst_gain_min": 0.03, "gap_ratio_max": 0.7, "mean_drop_max": 0.02, "closed_share_min": 0.5,
               "seconds_max": 1200},
    "faces_synthetic": {"distinct_share_min": 1.0, "purity_mean_min": 0.9, "purity_min_min": 0.8,
                        "psnr_gain_min_db": 3.0, "restoration_min_min": 0.5, "dead_max": 0},
}


class Missing(Exception):
    """A metric the table needs is absent from the JSON (or null where null means unmeasured)."""


def get(m: dict, key: str, none_ok: bool = True):
    """m["a"]["b"] for key "a.b"; Missing if any part is absent (or the value is None and not none_ok)."""
    node = m
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise Missing(key)
        node = node[part]
    if node is None and not none_ok:
        raise Missing(key)
    return node


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


def verdict(check: Callable[[], bool]) -> bool | None:
    try:
        return bool(check())
    except Missing:
        return None


def mark(label: str, ok: bool | None) -> str:
    return f"{label}: {NOT_MEASURED}" if ok is None else f"{label} {'✓' if ok else '✗'}"


def kind(m: dict) -> str:
    """Which contract a metrics file follows (pipeline/evaluation.py), from its keys."""
    if m.get("skipped"):
        return "skipped"
    if "owner_agreement" in m:
        return "transfer"
    if "betas" in m:
        return "latent"
    if "arms" in m:
        return "debias"
    if "per_group" in m:
        return "faces"
    return "faces_synthetic" if "assignment" in m else "mnist"


def per_rows(m: dict, section: str, key: str) -> list:
    rows = get(m, section)
    if not rows:
        raise Missing(section)
    return [get(r, key, none_ok=False) for r in rows.values()]


# --- targets: (label, check) per kind; a check raising Missing is "not measured" ---

def at_least(m: dict, key: str, limit: float) -> Callable[[], bool]:
    """A null value is unmeasured here (e.g. restoration_min without any exact inverse)."""
    return lambda: get(m, key, none_ok=False) >= limit


def dead_target(m: dict, limit: int) -> tuple[str, Callable[[], bool]]:
    label = f"{limit} dead experts" if limit == 0 else f"≤ {limit} dead experts"
    return label, lambda: get(m, "dead_experts") <= limit


def distinct_target(m: dict, share: float) -> tuple[str, Callable[[], bool]]:
    """At least `share` of the mechanisms have a distinct winner (share 1: all of them)."""
    need = lambda n: math.ceil(share * n - 1e-9)  # noqa: E731
    n = m.get("specialization", {}).get("n_mechanisms")
    label = f"{n}/{n} distinct" if share == 1 else f"≥ {need(n) if n else '?'}/{n or '?'} distinct"
    return label, lambda: get(m, "specialization.distinct_winners") >= need(get(m, "specialization.n_mechanisms"))


def mnist_targets(m: dict) -> list:
    t = TARGETS["mnist"]

    def fast():   # null: never specialised, a failure rather than unmeasured
        secs = get(m, "train.seconds_to_specialize")
        return secs is not None and secs <= t["seconds_to_specialize_max"]

    def acc(suffix: str = ""):
        return lambda: (get(m, f"classifier.acc_experts{suffix}")
                        >= get(m, f"classifier.acc_clean{suffix}") - t["acc_drop_max"])

    return [(f"specialised ≤ {t['seconds_to_specialize_max']} s", fast), distinct_target(m, t["distinct_share_min"]),
            (f"acc experts ≥ acc clean − {t['acc_drop_max']}", acc()),
            ("the same on every test digit under every mechanism", acc("_all_digits")),
            dead_target(m, t["dead_max"]),
            (f"purity min ≥ {t['stable_purity_min']} at every check once specialised",
             at_least(m, "train.purity_min_after_specialized", t["stable_purity_min"]))]


def faces_targets(m: dict) -> list:
    t = TARGETS["faces"]

    def rates():
        return min(per_rows(m, "per_group", "canonical_rate_outputs")) >= t["canonical_rate_min"]

    def gender():   # measured only when the metrics carry it
        pairs = zip(per_rows(m, "per_group", "gender_acc_outputs"), per_rows(m, "per_group", "gender_acc_inputs"))
        return all(out > inp for out, inp in pairs)

    return [dead_target(m, t["dead_max"]), distinct_target(m, t["distinct_share_min"]),
            (f"canonical rate out ≥ {t['canonical_rate_min']} in every group", rates),
            (f"SSIM(input, output) ≥ {t['ssim_min']}", at_least(m, "ssim_input_output", t["ssim_min"])),
            ("gender acc out > in in every group", gender)]


def synthetic_targets(m: dict) -> list:
    t = TARGETS["faces_synthetic"]

    def gain():
        return get(m, "psnr_outputs") >= get(m, "psnr_inputs") + t["psnr_gain_min_db"]

    return [distinct_target(m, t["distinct_share_min"]),
            (f"purity mean ≥ {t['purity_mean_min']}", at_least(m, "specialization.purity_mean", t["purity_mean_min"])),
            (f"purity min ≥ {t['purity_min_min']}", at_least(m, "specialization.purity_min", t["purity_min_min"])),
            (f"PSNR out ≥ in + {t['psnr_gain_min_db']:g} dB", gain),
            (f"restoration min ≥ {t['restoration_min_min']}",
             at_least(m, "restoration_min", t["restoration_min_min"])),
            dead_target(m, t["dead_max"])]


def transfer_targets(m: dict) -> list:
    t = TARGETS["transfer"]
    n = m.get("n_mechanisms")
    need = math.ceil(t["agreement_share_min"] * n - 1e-9) if n else None

    def ratios(noise: bool) -> bool:
        """Every mechanism's MSE out/in under its limit (noise: below 1; the others: at most 0.5)."""
        rows = {k: v for k, v in get(m, "per_mechanism").items() if (k == "noise") == noise}
        if not rows:
            raise Missing("per_mechanism")
        got = [get(r, "mse_ratio", none_ok=False) for r in rows.values()]
        return all(v < t["mse_ratio_max_noise"] for v in got) if noise else all(v <= t["mse_ratio_max"] for v in got)

    return [(f"owner agreement ≥ {need or '?'}/{n or '?'}", lambda: get(m, "owner_agreement") >= need),
            (f"MSE out ≤ {t['mse_ratio_max']} × in (all but noise)", lambda: ratios(False)),
            ("MSE out < in (noise)", lambda: ratios(True))]


def latent_targets(m: dict) -> list:
    """The first and the last beta of `compare` (the VAE and the beta-VAE)."""
    t = TARGETS["latent"]
    lo, hi = (m.get("compare") or ["?", "?"])[:2]
    b = lambda key, path: get(m, f"betas.{key}.{path}", none_ok=False)  # noqa: E731
    return [(f"gender MIG at beta {hi} > at beta {lo}", lambda: b(hi, "labels.gender.mig") > b(lo, "labels.gender.mig")),
            (f"recon MSE at beta {hi} ≤ {t['mse_ratio_max']} × beta {lo}",
             lambda: b(hi, "recon_mse") <= t["mse_ratio_max"] * b(lo, "recon_mse")),
            (f"top gender dimension AUC ≥ {t['gender_auc_min']} at beta {hi}",
             lambda: b(hi, "labels.gender.top_dim_auc") >= t["gender_auc_min"]),
            (f"stage ≤ {t['seconds_max']} s", lambda: get(m, "seconds") <= t["seconds_max"])]


def debias_targets(m: dict) -> list:
    """On the seeds' means: DB-VAE against ERM, and against the reweighting oracle's gain."""
    t = TARGETS["debias"]
    a = lambda arm, key: get(m, f"arms.{arm}.summary.{key}.mean", none_ok=False)  # noqa: E731
    def closed():
        oracle = a("reweight", "worst_acc") - a("erm", "worst_acc")
        if oracle <= 0:   # no gain to close: the oracle did not beat ERM's worst cell (the report says so)
            raise Missing("arms.reweight.summary.worst_acc")
        return a("dbvae", "worst_acc") - a("erm", "worst_acc") >= t["closed_share_min"] * oracle
    return [(f"DB-VAE worst cell ≥ ERM's + {t['worst_gain_min']}",
             lambda: a("dbvae", "worst_acc") >= a("erm", "worst_acc") + t["worst_gain_min"] - 1e-9),
            (f"DB-VAE gap ≤ {t['gap_ratio_max']} × ERM's", lambda: a("dbvae", "gap") <= t["gap_ratio_max"] * a("erm", "gap")),
            (f"DB-VAE mean acc ≥ ERM's − {t['mean_drop_max']}",
             lambda: a("dbvae", "mean_acc") >= a("erm", "mean_acc") - t["mean_drop_max"] - 1e-9),
            (f"DB-VAE closes ≥ {t['closed_share_min']} of the ERM → reweighting worst-cell gain", closed),
            (f"stage ≤ {t['seconds_max']} s", lambda: get(m, "seconds") <= t["seconds_max"])]


TARGET_LISTS = {"debias": debias_targets, "transfer": transfer_targets, "latent": latent_targets, "mnist": mnist_targets, "faces": faces_targets, "faces_synthetic": synthetic_targets}


def targets(m: dict) -> list[tuple[str, bool | None]]:
    """(label, True / False / None = not measured) for every target of the file's kind."""
    return [(label, verdict(check)) for label, check in TARGET_LISTS.get(kind(m), lambda _: [])(m)]


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
              "`TARGETS` in `pipeline/results.py`, and a metric absent from the JSON reads \"not measured\". "
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
