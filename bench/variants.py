"""Recipes compared: how fast and how well do the experts specialise under each variant?

Each variant is a set of param overrides (dotted keys under the dataset's section of params.yaml).
For each variant and seed this runs identity pretraining and competitive training in-process (the
pipeline's own library functions) and checks the held-out validation assignment every
`check_every` iterations.
- mnist: stops at the first specialised check (or `--cap` iterations); the data split follows the seed.
- faces, faces_synthetic: run `--cap` iterations on the prepared data (run `dvc repro
  classifier@<ds>` first), then evaluate on the test split like the evaluate stage.
`--set KEY=VALUE ...` changes the params every variant starts from (e.g. a tiny run for a test:
`--set pretrain.max_iterations=10 train.check_size=64`); a variant's own overrides still win.
Writes a markdown table (embedded in reports/<ds>.md by the report stage) and the raw rows as JSON.
Each row names its source: the commit (`+dirty` when the work tree had uncommitted changes), the
variant's and the --set overrides, and the full effective dataset params.

    python bench/variants.py [--dataset mnist] [--seeds 0 1] [--only NAME ...] [--threads 1] [--cap 400]
                             [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import dataclasses as dc
import json
import subprocess
import time
from pathlib import Path

import torch
import yaml

from pipeline import config, evaluation, icm, loop, metrics, seeds
from pipeline.data import facesets, mnist
from pipeline.distributed import Launch
from pipeline.io import load_torch, save_json, save_text
from pipeline.models import classifier
from pipeline.paths import Paths
from pipeline.runtime import images_to, log, setup

ROOT = Path(__file__).resolve().parents[1]   # the repository (for its commit)
PLAIN = {"train.reseed_every": 0, "train.lr_final_fraction": 1.0}
UNET = {"experts.arch": "unet", "experts.channels": 16}
SEED_STUDY = {"train.identity_weight": 0.0, "train.lr_experts": 1e-3, "train.lr_discriminator": 1e-3,
              "train.reseed_every": 0}
LR3 = {"train.lr_experts": 1e-3, "train.lr_discriminator": 1e-3}
L1 = {"train.identity_weight": 1.0}
# Each faces variant is stated in full against FACES_BASE (the paper expert without stabilisers at lr
# 2e-4, the faces defaults until this table picked another), so a row means the same whatever
# params.yaml's defaults are now.
FACES_BASE = {"experts.arch": "paper", "experts.residual": False, "train.spectral_norm": False, "train.r1_gamma": 0.0,
              "train.lr_experts": 2e-4, "train.lr_discriminator": 2e-4, "train.capacity_factor": 1.5}
FACES = {name: {**FACES_BASE, **overrides} for name, overrides in {
    "paper expert, adversarial loss only, lr 1e-3": SEED_STUDY,
    "paper expert, L1 identity x1": L1,
    "paper expert, L1 identity x1, lr 1e-3": {**L1, **LR3},
    "U-Net, adversarial loss only": {**UNET, "train.identity_weight": 0.0},
    "U-Net, L1 identity x1": {**UNET, **L1},
    "U-Net, L1 identity x1, lr 1e-3": {**UNET, **L1, **LR3},
    # the stabilisers that undid the synthetic shifts, on the race groups
    "residual experts, L1 identity x1": {"experts.residual": True, **L1},
    "residual, SN, R1 gamma 5, L1 identity x1": {"experts.residual": True, "train.spectral_norm": True,
                                                 "train.r1_gamma": 5.0, **L1},
    "residual, SN, R1 gamma 5, L1 identity x1, lr 1e-3": {"experts.residual": True, "train.spectral_norm": True,
                                                          "train.r1_gamma": 5.0, **L1, **LR3},
    # D sat at chance (loss ~1.38, mean score 0.52 on canonical faces) at lr 2e-4: a faster D (TTUR)
    "residual, SN, R1 gamma 5, L1 identity x1, D lr 1e-3": {"experts.residual": True, "train.spectral_norm": True,
                                                            "train.r1_gamma": 5.0, **L1,
                                                            "train.lr_discriminator": 1e-3},
    "residual, L1 identity x3, D lr 1e-3": {"experts.residual": True, "train.identity_weight": 3.0,
                                            "train.lr_discriminator": 1e-3},
    # capacity 1.0: each expert takes exactly half of every batch (2 experts), so one cannot win both groups
    "residual, SN, R1 gamma 5, L1 identity x1, capacity 1.0": {"experts.residual": True,
                                                               "train.spectral_norm": True, "train.r1_gamma": 5.0,
                                                               **L1, "train.capacity_factor": 1.0},
    # D also learns the raw White and Black faces as fakes (it keeps what tells the groups apart in view),
    # and an identity term blind to global colour offsets (a tone change costs nothing, structure does)
    "residual, L1 identity x3, D lr 1e-3, D also on raw inputs x1": {
        "experts.residual": True, "train.identity_weight": 3.0, "train.lr_discriminator": 1e-3,
        "train.raw_fake_weight": 1.0},
    "residual, L1 identity x3 blind to offsets, D lr 1e-3, D also on raw inputs x1": {
        "experts.residual": True, "train.identity_weight": 3.0, "train.lr_discriminator": 1e-3,
        "train.raw_fake_weight": 1.0, "train.identity_blind_offsets": True},
}.items()}
# faces_synthetic: the 8 identifiable mechanisms (params.yaml defaults), each stabiliser alone, then
# together, each stated in full against SYNTHETIC_BASE (the paper expert with L1 identity x10 and no
# stabiliser: the default until this table picked residual + SN + R1 gamma 5 + identity x1).
SN, R1, RES = {"train.spectral_norm": True}, {"train.r1_gamma": 1.0}, {"experts.residual": True}
EMA, HYST = {"train.ema": 0.99}, {"train.hysteresis": 0.5}
FIRST_SET = {"data.mechanisms": ["hflip", "colour_cast", "brightness_contrast", "occlusion", "blur", "translate"],
             "experts.num_experts": 6}
SYNTHETIC_BASE = {"experts.arch": "paper", "experts.residual": False, "train.spectral_norm": False,
                  "train.r1_gamma": 0.0, "train.identity_weight": 10.0, "train.capacity_factor": 1.0}
BEST_PROBE = {**RES, **SN, "train.r1_gamma": 5.0, "train.identity_weight": 1.0}
RAW_BLIND = {**BEST_PROBE, "train.raw_fake_weight": 1.0, "train.identity_blind_offsets": True}  # params.yaml's
LOCAL_VAE = {"experts.arch": "vae_local", "experts.latent_dim": 8}
SYNTHETIC = {name: {**SYNTHETIC_BASE, **overrides} for name, overrides in {
    "paper expert, L1 identity x10, no stabiliser": {},
    "spectral norm in D": SN,
    "R1 penalty, gamma 1": R1,
    "residual experts": RES,
    "EMA of expert weights, 0.99": EMA,
    "assignment hysteresis, margin 0.5": HYST,
    "all five: SN, R1, residual, EMA, hysteresis": {**SN, **R1, **RES, **EMA, **HYST},
    # the best recipe of the probe in ../shared/findings (residual + SN + R1 gamma 5 + identity x1) ...
    "residual, SN, R1 gamma 5, identity x1": BEST_PROBE,
    # ... and with the two stabilisers it did not try
    "residual, SN, R1 gamma 5, identity x1, EMA, hysteresis": {**BEST_PROBE, **EMA, **HYST},
    # the L1 identity term charges |0.2| per pixel for undoing a cast or a brightness change (a global
    # inverse), and little for a shift's border: does it hold the global inverses back?
    "residual, SN, R1 gamma 5, no L1 identity": {**BEST_PROBE, "train.identity_weight": 0.0},
    # capacity 1.0 (cap 4 of 32 for 8 experts) sends a batch's overflow (more than 4 faces of one
    # mechanism, most batches) to other experts, which then learn that mechanism too (MNIST's lesson)
    "residual, SN, R1 gamma 5, identity x1, capacity 2.0": {**BEST_PROBE, "train.capacity_factor": 2.0},
    "residual, SN, R1 gamma 5, identity x1, capacity 3.0": {**BEST_PROBE, "train.capacity_factor": 3.0},
    # hog splitting still reseeds a colour expert from another expert 25 iterations before the end
    # (seen in the logs): does that churn keep the casts and brightness owners from forming?
    "residual, SN, R1 gamma 5, identity x1, hog splitting off": {**BEST_PROBE, "train.reseed_every": 0},
    # with SN and R1 gamma 5 D's loss stays at 1.25-1.38 (chance: 1.39) for all 1,200 iterations, too
    # weak to tell near-identity colour experts apart: a stronger D under the same experts and loss
    "residual, identity x1, no SN, no R1": {**RES, "train.identity_weight": 1.0},
    "residual, SN, R1 gamma 1, identity x1": {**BEST_PROBE, "train.r1_gamma": 1.0},
    # in the game, D tells the casts and brightness changes from canonical faces by AUC 0.60-0.76 (0.95-1.0
    # for the shifts), where a D trained on the raw inputs alone reaches 0.98 on the warm cast: D forgets
    # what it need not see in the experts' outputs. D also learning the raw inputs as fakes keeps it in view
    "residual, SN, R1 gamma 5, identity x1, D also on raw inputs x1": {**BEST_PROBE, "train.raw_fake_weight": 1.0},
    "residual, identity x1, no SN, no R1, D also on raw inputs x1": {**RES, "train.identity_weight": 1.0,
                                                                      "train.raw_fake_weight": 1.0},
    # with D on raw inputs the casts move; the L1 term still charges |0.2| a pixel for a global inverse
    "residual, SN, R1 gamma 5, identity x1 blind to offsets, D also on raw inputs x1": RAW_BLIND,
    # the default still changes the structure of cast faces (RMS 0.1 a pixel beside the offset): a dearer
    # identity, now that it no longer charges for the offset, and a longer game (train stage <= 15 min)
    "residual, SN, R1 gamma 5, identity x3 blind to offsets, D also on raw inputs x1": {
        **RAW_BLIND, "train.identity_weight": 3.0},
    "residual, SN, R1 gamma 5, identity x1 blind to offsets, D also on raw inputs x1, 2,000 iterations": {
        **RAW_BLIND, "train.iterations": 2000},
    # 64 px rows need data prepared at 64 px (a copy with that image_size in params.yaml)
    "residual, SN, R1 gamma 5, identity x1 blind to offsets, D also on raw inputs x1, 64 px": {
        **RAW_BLIND, "data.image_size": 64},
    "U-Net experts": UNET,
    "U-Net experts, 64 px": {**UNET, "data.image_size": 64},
    "VAE experts (latent 32, beta 1)": {"experts.arch": "vae"},
    "local VAE experts (8 latents a pixel, beta 1)": LOCAL_VAE,
    "first mechanism set (6, with hflip, occlusion, blur)": FIRST_SET,
}.items()}
VARIANTS = {  # dataset -> variant name -> overrides
    "mnist": {
        "paper: argmax, lr 1e-4": {**PLAIN, "train.assignment": "argmax", "train.lr_experts": 1e-4,
                                   "train.lr_discriminator": 1e-4},
        "argmax, lr 1e-3": {**PLAIN, "train.assignment": "argmax"},
        "capacity 1.5": {**PLAIN, "train.capacity_factor": 1.5},
        "capacity 1.0": {**PLAIN, "train.capacity_factor": 1.0},
        "capacity 1.0, batch 30 (exact balance)": {**PLAIN, "train.capacity_factor": 1.0, "train.batch_size": 30},
        "argmax, hog splitting": {**PLAIN, "train.assignment": "argmax", "train.reseed_every": 25},
        "capacity 1.5, hog splitting": {**PLAIN, "train.reseed_every": 25},
        "capacity 1.5, hog splitting, cosine lr decay (default)": {},
        # owner stability (run with --no-stop --cap 800): does a margin or an average keep owners put?
        "default + assignment hysteresis 0.5": {"train.hysteresis": 0.5},
        "default + EMA of expert weights 0.99": {"train.ema": 0.99},
        "VAE experts (latent 32, beta 1)": {"experts.arch": "vae"},
        "VAE experts, vae_weight 100": {"experts.arch": "vae", "train.vae_weight": 100.0},
        # a global latent lets the decoder swap the digit; the paper's expert with a Gaussian at every pixel cannot
        "local VAE experts (8 latents a pixel, beta 1)": LOCAL_VAE,
        # the winners' reconstruction term pulls each output back towards its transformed input
        "local VAE experts (8 latents a pixel, beta 1), vae_weight 0.1": {**LOCAL_VAE, "train.vae_weight": 0.1},
        # the local VAE experts restore within a point (mnist_vae.md); their winners' loss has a reconstruction
        # term: does a small L1 identity term do the same for the paper's expert? (capacity 3.0 and D x0.1
        # are params.yaml's, so the variant sets only the identity weight)
        "capacity 3.0 + D lr x0.1 once specialised + L1 identity x0.1": {"train.identity_weight": 0.1},
        "default + assignment hysteresis 1.0": {"train.hysteresis": 1.0},
        "default, hog splitting off": {"train.reseed_every": 0},
        "default + hysteresis 0.5, hog splitting off": {"train.hysteresis": 0.5, "train.reseed_every": 0},
        # capacity sends a batch's overflow (more samples of one mechanism than the cap) to other experts,
        # which then learn that mechanism too: fewer forced losses with a larger cap, none under argmax
        "default, capacity 2.0": {"train.capacity_factor": 2.0},
        "default, capacity 3.0": {"train.capacity_factor": 3.0},
        "default, argmax assignment": {"train.assignment": "argmax"},
        "default, 1600 iterations": {"train.iterations": 1600},
        "default + R1 gamma 1": {"train.r1_gamma": 1.0},
        # a D that sees noise: instance noise on D's inputs, so it judges strokes over pixel residue
        "default + instance noise 0.3": {"train.instance_noise": 0.3},
        "default + instance noise 0.5": {"train.instance_noise": 0.5},
        "capacity 3.0 + hysteresis 0.5": {"train.capacity_factor": 3.0, "train.hysteresis": 0.5},
        "capacity 3.0 + instance noise 0.3": {"train.capacity_factor": 3.0, "train.instance_noise": 0.3},
        "capacity 4.0": {"train.capacity_factor": 4.0},
        "capacity 3.0 + EMA of expert weights 0.99": {"train.capacity_factor": 3.0, "train.ema": 0.99},
        # the isolated dips at the 3-expert config follow D's step-to-step moves (README): a slower D,
        # or a larger batch (less noisy steps for D and the winners)
        "capacity 3.0, D lr 3e-4": {"train.capacity_factor": 3.0, "train.lr_discriminator": 3e-4},
        "capacity 3.0, batch 64": {"train.capacity_factor": 3.0, "train.batch_size": 64},
        # a lower lr once specialised: D and the owners move less, so the owners should stay put
        "capacity 3.0 + lr x0.1 once specialised": {"train.capacity_factor": 3.0, "train.lr_specialized_experts": 0.1,
                                                    "train.lr_specialized_discriminator": 0.1},
        # the probe above traced single dips to D's step: slow D alone, the experts keep restoring
        "capacity 3.0 + D lr x0.1 once specialised": {"train.capacity_factor": 3.0,
                                                      "train.lr_specialized_discriminator": 0.1},
        # instance noise kept the bench's restoration within 2 points before D x0.1 was the default:
        # do the two together keep both the restoration and the owners?
        "capacity 3.0 + D lr x0.1 once specialised + instance noise 0.3": {
            "train.capacity_factor": 3.0, "train.lr_specialized_discriminator": 0.1, "train.instance_noise": 0.3},
        # D also learns the raw transformed digits as fakes: it keeps judging where a digit sits and how its
        # strokes look on every mechanism, not only on the experts' current outputs
        "capacity 3.0 + D lr x0.1 once specialised + D also on raw inputs x1": {
            "train.capacity_factor": 3.0, "train.lr_specialized_discriminator": 0.1, "train.raw_fake_weight": 1.0},
    },
    "faces_synthetic": SYNTHETIC,
    "faces": FACES,   # rows in reports/variants/faces.md were measured before the per-expert metrics
}


class Stop(Exception):
    pass


def configure(params: dict, dataset: str, overrides: dict, seed: int, base: dict | None = None):
    """The dataset's config: params.yaml, then `base` (--set), then the variant's `overrides`
    (dotted keys under the dataset's section), validated by pipeline.config."""
    p = json.loads(json.dumps(params))
    p["seed"] = seed
    for dotted, value in {**(base or {}), **overrides}.items():
        *parents, last = f"{dataset}.{dotted}".split(".")
        node = p
        for k in parents:
            if not isinstance(node, dict) or k not in node:
                raise SystemExit(f"override {dotted!r}: params.yaml has no section {k!r} on that path")
            node = node[k]
        node[last] = value
    return getattr(config.from_dict(p), dataset)


def parse_set(items: list[str]) -> dict:
    """`--set a.b=1 c=[x, y]` -> {"a.b": 1, "c": ["x", "y"]} (values are YAML, as in params.yaml)."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE, e.g. pretrain.max_iterations=10")
        out[key] = yaml.safe_load(value)
    return out


def tensors_for(dataset: str, ds, seed: int) -> dict:
    if dataset != "mnist":
        path = Paths(dataset).prepared / "tensors.pt"
        if not path.exists():
            raise SystemExit(f"{path} is missing: run `dvc repro classifier@{dataset}` first")
        t = load_torch(path)
        wanted = facesets.mechanism_names(ds.data)   # data overrides need their own prepare
        if list(t["mechanisms"]) != wanted:
            raise SystemExit(f"{path} holds mechanisms {list(t['mechanisms'])}, the variant asks for "
                             f"{wanted}: set them in params.yaml and run `dvc repro classifier@{dataset}` first")
        return t
    d = ds.data
    x, y = mnist.load_embedded() if d.source == "embedded" else mnist.load_full(Path("data/mnist/raw"))
    t, _ = mnist.prepare(x, y, d.mechanisms, d.image_size, d.test_fraction, d.val_fraction, d.shift,
                         d.noise_variance ** 0.5, seed)
    return {**t, "mechanisms": list(d.mechanisms)}


def refuse_data_overrides(params: dict, dataset: str, ds) -> None:
    """Faces variants train on data/<ds>/prepared, made from params.yaml's data section, so a
    variant or --set that changes a data.* key would run on the prepared tensors without a word."""
    prepared = getattr(config.from_dict(params), dataset).data
    changed = [f.name for f in dc.fields(prepared) if getattr(prepared, f.name) != getattr(ds.data, f.name)]
    if changed:
        raise SystemExit(f"{dataset}: the variant changes data.{', data.'.join(changed)}, but faces variants run "
                         f"on data/{dataset}/prepared: set them in params.yaml and run `dvc repro "
                         f"classifier@{dataset}` first")


def run_variant(params: dict, dataset: str, overrides: dict, seed: int, cap: int, stop: bool,
                base: dict | None = None) -> dict:
    """One run; the lr schedule follows the params' iterations, but the run ends at `cap` iterations
    (or at train.iterations if that is lower), or at the first specialised check when `stop`."""
    ds = configure(params, dataset, overrides, seed, base)
    if dataset != "mnist":
        refuse_data_overrides(params, dataset, ds)
    device = setup(seed, "cpu")
    e, pc = ds.experts, ds.pretrain
    # the loop's checkpoint hook runs every iteration here: it only decides when to stop (nothing is saved)
    tc = dc.replace(ds.train, checkpoint_every=1)
    t = tensors_for(dataset, ds, seed)
    n_mech = len(t["mechanisms"])
    xt, xc = images_to(t["train_transformed"], device), images_to(t["train_canonical"], device)
    xv, mv = images_to(t["val_transformed"][: tc.check_size], device), t["val_transformed_mech"][: tc.check_size]
    start = time.perf_counter()
    bank, its = icm.pretrain_experts(e, pc, xt, seed)
    pre_s = time.perf_counter() - start
    log(f"seed {seed}: identity pretraining {its} iterations, {pre_s:.0f} s")
    state = loop.start(bank.state_dict(), e, tc, xt.shape[1], xt.shape[-1], device, seed, Launch.single())

    def maybe_stop(s):
        if (stop and s.specialized_at) or s.iteration >= cap:
            raise Stop

    try:
        loop.train(state, xc, xt, xv, mv.numpy(), n_mech, tc, maybe_stop,
                   log=lambda msg: log(f"seed {seed}: {msg}"))   # a line per check: progress of a long run
    except Stop:
        pass
    m, _, _ = loop.check(state, xv, mv.numpy(), n_mech, tc.purity_threshold, 256)
    spec = state.specialized_at
    log(f"seed {seed}: trained {state.iteration} iterations in {state.seconds:.0f} s; evaluating on the test split")
    row = {"seed": seed, "commit": commit(), "overrides": overrides, "base_overrides": base or {},
           "params": config.as_dict(ds), "cap": cap, "stop_when_specialised": stop, "torch": torch.__version__,
           "threads": torch.get_num_threads(), "pretrain_iterations": its,
           "pretrain_seconds": round(pre_s, 1), "iterations": state.iteration,
           "seconds_per_iteration": round(state.seconds / state.iteration, 3),
           "iterations_to_specialize": spec[0] if spec else None,
           "seconds_to_specialize": round(pre_s + spec[1], 1) if spec else None,
           "distinct_winners": metrics.distinct_winners(m),
           "purity_mean": round(float(metrics.purity(m).mean()), 3),
           "distinct_curve": [int(v) for _, v in state.curves["specialization/distinct_winners"]],
           **loop.stability(state.curves["specialization/purity_min"], spec[0] if spec else None)}
    row.update(test_metrics(dataset, state, t, ds.data.strength) if dataset != "mnist"
               else mnist_test_metrics(ds, state, t, seed))
    return row


def short(commit: str) -> str:
    """A row's commit for the tables: 8 hex digits, keeping `+dirty` (a row made off the commit)."""
    sha, plus, rest = commit.partition("+")
    return sha[:8] + plus + rest


def commit() -> str:
    """The commit that made a row, `+dirty` when the work tree had uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head, dirty = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    return (head or "unknown") + ("+dirty" if dirty else "")


def mnist_test_metrics(ds, state: loop.State, t: dict, seed: int) -> dict:
    """The evaluate stage's mnist metrics on the test split: an evaluator trained as the classifier
    stage does (pipeline/seeds.py), every expert on every test digit (the EMA weights when on)."""
    clf = seeds.evaluator(ds.classifier, t, seed, torch.device("cpu"))
    untimed = {"iterations": 0, "seconds": 0, "iters_per_second": 0, "iterations_to_specialize": None,
               "seconds_to_specialize": None}   # timings are the row's own fields
    state.disc.eval()
    r, _ = evaluation.mnist_on_test(state.eval_bank(), state.disc, clf, t, untimed, 250, torch.device("cpu"),
                                    evaluation.mnist_strength(ds.data, seed))
    return {"test_distinct": r["specialization"]["distinct_winners"],
            "test_purity": round(r["specialization"]["purity_mean"], 3),
            "test_purity_min": round(r["specialization"]["purity_min"], 3), **experts_summary(r),
            "acc": [round(r["classifier"][k], 3) for k in ("acc_clean", "acc_transformed", "acc_experts")]}


def test_metrics(dataset: str, state: loop.State, t: dict, strength) -> dict:
    """The evaluate stage's faces metrics on the test split (classifier from models/<ds>), on the
    weights the train stage would save (the EMA when it is on)."""
    saved = load_torch(Paths(dataset).models / "classifier.pt")
    clf = classifier.load(saved, *t["test_transformed"].shape[1::2], "cpu")
    untimed = {"iterations": 0, "seconds": 0, "iters_per_second": 0, "pretrain_seconds": 0}
    state.disc.eval()
    r, _ = evaluation.faces_on_test(state.eval_bank(), state.disc, clf, saved, t, untimed, 250,
                                    torch.device("cpu"), strength)
    keep = {"test_distinct": r["specialization"]["distinct_winners"],
            "test_purity": round(r["specialization"]["purity_mean"], 3),
            "test_purity_min": round(r["specialization"]["purity_min"], 3),
            "ssim": round(r["ssim_input_output"], 3), **experts_summary(r),
            "canonical_rate": [round(r["classifier"][k], 3) for k in ("canonical_rate_inputs",
                                                                      "canonical_rate_outputs")]}
    if "psnr_inputs" in r:
        keep["psnr"] = [round(r["psnr_inputs"], 2), round(r["psnr_outputs"], 2)]
        keep["restoration_min"] = r.get("restoration_min")
        keep["psnr_per_mechanism"] = {k: [round(v["psnr_inputs"], 1), round(v["psnr_outputs"], 1)]
                                      for k, v in r["per_mechanism"].items()}
    return keep


def experts_summary(r: dict) -> dict:
    """The per-expert section of an evaluation result (evaluation.per_expert) in one row: dead and
    alive counts, which experts are dead, and the lowest spread ratio over all experts (None when
    no expert's spread was measurable)."""
    ratios = [e["spread_ratio"] for e in r["per_expert"].values() if e["spread_ratio"] is not None]
    return {"dead_experts": r["dead_experts"], "alive_experts": r["alive_experts"],
            "dead": [name for name, e in r["per_expert"].items() if e["dead"]],
            "spread_ratio_min": round(min(ratios), 3) if ratios else None}


def dash(v) -> str:
    return "-" if v is None else str(v)


def base_note(results: dict[str, list[dict]]) -> list[str]:
    """A line under the table when rows ran on changed base params (--set), so a tiny run is never
    read as a full one."""
    bases = {json.dumps(r.get("base_overrides") or {}, sort_keys=True) for rows in results.values() for r in rows}
    bases.discard("{}")
    return ["", "Base params changed for these rows (--set): " + "; ".join(sorted(bases)) + "."] if bases else []


def table(dataset: str, results: dict[str, list[dict]], default: str) -> str:
    if dataset == "mnist":
        return mnist_table(results, default)
    synthetic = any("psnr" in r for rows in results.values() for r in rows)
    lines = ["## Recipes compared (bench/variants.py)", "",
             "Each run: identity pretraining, then the iterations shown, then the evaluate stage's metrics on "
             "the test split (argmax winners; every expert measured on every input). `spread` = min over "
             "experts of (output spread / input spread) over all inputs; `dead` = experts flagged dead "
             "(README, Metrics). `train s`: wall-clock of single-threaded runs, two to four of them at once on the "
             "2-core machine, so read it as a rough cost only. "
             f"Default recipe: **{default}**. Each row's commit and full params are in the JSON beside this "
             "file.", "",
             "| variant | seed | commit | iterations | train s | distinct | purity (min) | SSIM(input, output) | "
             "spread | dead | canonical rate in -> out |"
             + (" PSNR in -> out (dB) | restoration min |" if synthetic else ""),
             "|---" * (11 + 2 * synthetic) + "|"]
    for name, rows in results.items():
        for r in rows:
            cr = r["canonical_rate"]
            rest, spread = r.get("restoration_min"), r.get("spread_ratio_min")
            line = (f"| {name} | {r['seed']} | {short(r.get('commit', '?'))} | {r['iterations']} | "
                    f"{r['seconds_per_iteration'] * r['iterations']:.0f} | {r['test_distinct']} | "
                    f"{r['test_purity']} ({r.get('test_purity_min', '?')}) | {r['ssim']} | {dash(spread)} | "
                    f"{r.get('dead_experts', '?')} | {cr[0]} -> {cr[1]} |")
            if synthetic:
                line += f" {r['psnr'][0]} -> {r['psnr'][1]} | {'-' if rest is None else round(rest, 2)} |"
            lines.append(line)
    if synthetic:
        lines += ["", "PSNR (dB) of input -> output per mechanism, first seed:", ""]
        header = None
        for name, rows in results.items():
            per = rows[0]["psnr_per_mechanism"]
            if list(per) != header:   # variants with another mechanism set get their own table
                lines += [""] * (header is not None)
                header = list(per)
                lines += ["| variant | " + " | ".join(header) + " |", "|---" * (1 + len(header)) + "|"]
            lines.append(f"| {name} | " + " | ".join(f"{a} -> {b}" for a, b in per.values()) + " |")
    return "\n".join(lines + base_note(results)) + "\n"


def mnist_table(results: dict[str, list[dict]], default: str) -> str:
    first = next(r for rows in results.values() for r in rows)
    p = first["params"]
    stop = ("each run stops at its first specialised check (every mechanism a distinct dominant expert with "
            "purity >= 0.9 on held-out validation digits, argmax rule) or at the iteration cap"
            if first["stop_when_specialised"] else
            f"each run goes on to {first['cap']} iterations after its first specialised check (every mechanism "
            "a distinct dominant expert with purity >= 0.9 on held-out validation digits, argmax rule), so "
            "that the owners' stability can be read")
    lines = ["## Specialisation recipes (bench/variants.py)", "",
             f"N' = {p['experts']['num_experts']} experts, mechanisms {', '.join(p['data']['mechanisms'])} "
             f"(shift {p['data']['shift']} px), embedded MNIST; {stop}. Seconds include identity "
             "pretraining; `threads` is the run's torch thread count (single-threaded runs went two at a time "
             f"on the 2-core machine). Default recipe: **{default}**. Each row's commit and full params are in "
             "the JSON beside this file.", "",
             "| variant | seed | commit | threads | pretrain it | iterations to specialise | seconds to specialise | "
             "distinct owners at the end | purity at the end | purity min after specialising | purity min, last 25% of "
             "checks | test: distinct, purity (min) | test: dead, spread min | test acc clean / transformed / experts |",
             "|---" * 14 + "|"]
    for name, rows in results.items():
        for r in rows:
            lines.append(f"| {name} | {r['seed']} | {short(r.get('commit', '?'))} | {r['threads']} | {r['pretrain_iterations']} | "
                         f"{r['iterations_to_specialize'] or 'not by ' + str(r['iterations'])} | "
                         f"{r['seconds_to_specialize'] or '-'} | {r['distinct_winners']}/"
                         f"{len(r['params']['data']['mechanisms'])} | {r['purity_mean']} | "
                         f"{dash(r.get('purity_min_after_specialized'))} | {dash(r.get('purity_min_last_quarter'))} | "
                         + mnist_test_cells(r) + " |")
    return "\n".join(lines + base_note(results)) + "\n"


def mnist_test_cells(r: dict) -> str:
    """The test-split cells of an mnist row ('-' for rows measured before they existed)."""
    if "test_distinct" not in r:
        return "- | - | -"
    return (f"{r['test_distinct']}, {r['test_purity']} ({r['test_purity_min']}) | {r['dead_experts']}, "
            f"{dash(r['spread_ratio_min'])} | " + " / ".join(str(a) for a in r["acc"]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="mnist", choices=sorted(VARIANTS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    ap.add_argument("--cap", type=int, default=400, help="stop a run here (mnist: even if not specialised)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-stop", action="store_true", help="mnist: run every variant to --cap")
    ap.add_argument("--out", help="output path without suffix (default reports/variants/<dataset>)")
    ap.add_argument("--default", default="see params.yaml", help="which variant params.yaml uses")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="only combine earlier runs' JSON into --out")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="change the base params of every variant (dotted keys under the dataset's section)")
    args = ap.parse_args()
    out = args.out or f"reports/variants/{args.dataset}"
    variants = VARIANTS[args.dataset]
    unknown = [n for n in args.only or [] if n not in variants]
    if unknown:
        ap.error(f"unknown variant(s) for {args.dataset}: {unknown}; known: {list(variants)}")
    base = parse_set(args.set)
    if args.merge:  # e.g. two single-thread streams run side by side, each with its own --out
        parts: dict[str, dict[int, dict]] = {}  # variant -> seed -> row; a later file's row wins
        for f in args.merge:
            for name, rows in json.loads(Path(f).read_text()).items():
                parts.setdefault(name, {}).update({r["seed"]: r for r in rows})
        results = {name: [parts[name][s] for s in sorted(parts[name])] for name in variants if name in parts}
    else:
        torch.set_num_threads(args.threads)
        params = yaml.safe_load(Path("params.yaml").read_text())
        results = {}
        for name in args.only or variants:
            results[name] = []
            for seed in args.seeds:
                log(f"variant {name!r}, seed {seed}: start")
                r = run_variant(params, args.dataset, variants[name], seed, args.cap,
                                args.dataset == "mnist" and not args.no_stop, base)
                print(json.dumps({"variant": name, **r}), flush=True)
                results[name].append(r)
    save_json(results, out + ".json")
    save_text(table(args.dataset, results, args.default), out + ".md")


if __name__ == "__main__":
    main()
