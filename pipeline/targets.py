"""The issues' targets, defined once, and their checks against a metrics file (pipeline/evaluation.py).

Each check gives ✓ (True), ✗ (False) or "not measured" (None: a metric it needs is absent from the
JSON), never a pass by default. The README table (pipeline/results.py), the report stage and the
latent and debias reports all mark their targets with `targets` and `mark`; this module is the one
those stages depend on, so a change to how the table is laid out does not retrain them.
"""
from __future__ import annotations

import math
from typing import Callable

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
