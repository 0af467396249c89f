"""Every entry point outside pipeline/stages runs here at a tiny size, so a benchmark cannot rot
unnoticed again (bench/experts.py once failed with an AttributeError that no test saw)."""
import copy
import importlib.util
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
import yaml

from pipeline import evaluation
from pipeline.data import mnist
from pipeline.mechanisms import FaceStrength, Strength, apply, face_inverse
from pipeline.models.experts import Expert
from tests.conftest import ROOT

VARIANTS_FORMS = ["plain (reference)", "ours per-expert NCHW", "ours per-expert ch-last", "ours batched ch-last"]


def run(*args, cwd=ROOT):
    done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def source() -> str:
    """What a result made now must name as its source: HEAD, `+dirty` if tracked files changed."""
    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    return git("rev-parse", "HEAD") + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


@pytest.fixture(scope="module")
def variants():
    spec = importlib.util.spec_from_file_location("bench_variants", ROOT / "bench" / "variants.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_experts_measures_every_form_against_the_plain_step(tmp_path):
    out = tmp_path / "experts.json"
    printed = run("bench/experts.py", "--seconds", "0.2", "--experts", "2", "--json", str(out))
    saved = json.loads(out.read_text())
    rows = saved["rows"]
    assert saved["commit"] == source() and saved["threads"] >= 1 and saved["batch"] == 32
    assert [r["variant"] for r in rows] == VARIANTS_FORMS
    for r in rows:
        assert r["n_experts"] == 2 and r["iters_per_second"] > 0 and r["non_view_ops"] > 0
        assert r["speedup"] > 0 and r["ops_ratio"] > 0 and r["non_view_ratio"] > 0
        # the printed table carries the same numbers
        line = next(ln for ln in printed.splitlines() if r["variant"] in ln)
        assert f"{r['ops']}" in line.split() and f"{r['non_view_ops']}" in line.split()
    assert rows[0]["speedup"] == 1.0 and rows[0]["ops_ratio"] == 1.0 and rows[0]["non_view_ratio"] == 1.0
    assert rows[3]["non_view_ops"] < rows[0]["non_view_ops"]     # the batched form launches fewer kernels


def test_bench_variants_writes_a_sourced_row_and_its_table(tmp_path):
    out = tmp_path / "v"
    tiny = ["pretrain.max_iterations=10", "train.check_every=5", "train.check_size=64", "classifier.epochs=1"]
    run("bench/variants.py", "--dataset", "mnist", "--only", "capacity 1.0", "--seeds", "0", "--cap", "7",
        "--no-stop", "--threads", "1", "--out", str(out), "--set", *tiny)
    rows = json.loads(out.with_suffix(".json").read_text())["capacity 1.0"]
    assert len(rows) == 1
    r = rows[0]
    assert r["iterations"] == 7 and r["cap"] == 7 and not r["stop_when_specialised"]   # the cap is exact
    assert r["pretrain_iterations"] <= 10 and r["seconds_per_iteration"] > 0
    assert 0 <= r["distinct_winners"] <= 10 and 0 < r["purity_mean"] <= 1
    assert len(r["distinct_curve"]) == 1                                 # one check, at iteration 5
    assert r["commit"] == source()                                       # every row names its source
    assert r["overrides"] == {"train.reseed_every": 0, "train.lr_final_fraction": 1.0, "train.capacity_factor": 1.0}
    assert r["base_overrides"] == {"pretrain.max_iterations": 10, "train.check_every": 5, "train.check_size": 64,
                                   "classifier.epochs": 1}
    # every expert measured on the test split, as the evaluate stage does
    assert 0 <= r["test_distinct"] <= 10 and r["dead_experts"] + r["alive_experts"] == 10 and len(r["acc"]) == 3
    p = r["params"]                                                       # the full effective params
    assert set(p) == {"data", "classifier", "experts", "pretrain", "train", "evaluate"}
    assert p["train"]["capacity_factor"] == 1.0 and p["train"]["reseed_every"] == 0
    assert p["pretrain"]["max_iterations"] == 10 and p["train"]["check_size"] == 64
    assert p["data"]["source"] == "embedded" and len(p["data"]["mechanisms"]) == 10
    table = out.with_suffix(".md").read_text()
    sha, plus, rest = r["commit"].partition("+")                          # 8 hex digits, `+dirty` kept
    assert f"| capacity 1.0 | 0 | {sha[:8] + plus + rest} | 1 | {r['pretrain_iterations']} | not by 7 |" in table
    assert "N' = 10 experts, mechanisms up, down, left" in table and "goes on to 7 iterations" in table
    assert f"| {r['dead_experts']}, {r['spread_ratio_min']} | {r['acc'][0]} / {r['acc'][1]} / {r['acc'][2]} |" in table
    assert "None" not in table
    assert 'Base params changed for these rows (--set): {"classifier.epochs": 1, "pretrain.max_iterations": 10' in table


def test_local_vae_experts_run_through_the_training_loop_and_every_expert_is_measured(tmp_path):
    """arch vae_local end to end (pretraining, the competitive loop, the evaluate stage's contract)."""
    out, name = tmp_path / "v", "local VAE experts (8 latents a pixel, beta 1)"
    tiny = ["pretrain.max_iterations=5", "train.check_every=3", "train.check_size=32", "classifier.epochs=1",
            "experts.channels=4"]
    run("bench/variants.py", "--dataset", "mnist", "--only", name, "--seeds", "0", "--cap", "4", "--no-stop",
        "--threads", "1", "--out", str(out), "--set", *tiny)
    r = json.loads(out.with_suffix(".json").read_text())[name][0]
    assert r["params"]["experts"]["arch"] == "vae_local" and r["params"]["experts"]["latent_dim"] == 8
    assert r["iterations"] == 4 and r["dead_experts"] + r["alive_experts"] == 10
    assert r["spread_ratio_min"] >= 0 and 0 <= r["acc"][2] <= 1


def test_variant_overrides_win_over_set_and_unknown_keys_stop(variants, params):
    ds = variants.configure(params, "mnist", {"train.batch_size": 30}, 3,
                            {"train.batch_size": 16, "pretrain.max_iterations": 5})
    assert ds.train.batch_size == 30 and ds.pretrain.max_iterations == 5
    assert variants.parse_set(["train.ema=0.99", "data.mechanisms=[up, down]"]) == {
        "train.ema": 0.99, "data.mechanisms": ["up", "down"]}
    with pytest.raises(SystemExit, match="no section 'nope'"):
        variants.configure(params, "mnist", {}, 0, {"nope.x": 1})
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        variants.parse_set(["train.ema"])


def per_expert_section(spread_in, spread_out):
    """A real evaluation.per_expert section: 3 experts on 4 inputs, expert 2 wins none."""
    owner = np.array([0, 0, 1, 1])
    ones = np.ones((4, 3))
    return evaluation.per_expert(owner, 0.5 * ones, ones, ones.astype(bool), "acc", spread_in, spread_out, "acc_won")


def test_variants_summarise_the_per_expert_metrics(variants):
    r = per_expert_section(1.0, [0.9, 0.1, None])   # expert 1 collapsed, expert 2 never wins
    assert variants.experts_summary(r) == {"dead_experts": 2, "alive_experts": 1,
                                           "dead": ["expert_1", "expert_2"], "spread_ratio_min": 0.1}
    unmeasured = variants.experts_summary(per_expert_section(None, [None] * 3))   # too few inputs for a spread
    assert unmeasured["spread_ratio_min"] is None and unmeasured["dead_experts"] == 1
    row = {"seed": 0, "commit": "abc+dirty", "iterations": 4, "seconds_per_iteration": 0.5, "test_distinct": 1,
           "test_purity": 0.5, "test_purity_min": 0.2, "ssim": 0.7, "canonical_rate": [0.1, 0.2], **unmeasured}
    table = variants.table("faces", {"v": [row]}, "d")
    assert "| v | 0 | abc+dirty | 4 | 2 | 1 | 0.5 (0.2) | 0.7 | - | 1 | 0.1 -> 0.2 |" in table


def test_variants_refuse_a_faces_mechanism_set_the_prepared_data_lacks(variants, tmp_path, monkeypatch):
    """A faces variant that changes data.mechanisms once ran silently on the prepared 8 mechanisms."""
    monkeypatch.chdir(tmp_path)
    prepared = tmp_path / "data" / "faces_synthetic" / "prepared"
    prepared.mkdir(parents=True)
    torch.save({"mechanisms": ["shift_up", "shift_down"]}, prepared / "tensors.pt")
    same = types.SimpleNamespace(data=types.SimpleNamespace(mode="synthetic", mechanisms=["shift_up", "shift_down"]))
    assert variants.tensors_for("faces_synthetic", same, 0)["mechanisms"] == ["shift_up", "shift_down"]
    other = types.SimpleNamespace(data=types.SimpleNamespace(mode="synthetic", mechanisms=["hflip", "blur"]))
    with pytest.raises(SystemExit, match=r"asks for \['hflip', 'blur'\].*dvc repro classifier@faces_synthetic"):
        variants.tensors_for("faces_synthetic", other, 0)


def test_variants_read_demographic_groups_as_the_mechanisms(variants, tmp_path, monkeypatch):
    """Demographic data records its transformed groups as its mechanisms (and data.mechanisms is []):
    the check once refused every faces variant for that."""
    monkeypatch.chdir(tmp_path)
    prepared = tmp_path / "data" / "faces" / "prepared"
    prepared.mkdir(parents=True)
    torch.save({"mechanisms": ["white", "black"]}, prepared / "tensors.pt")
    ds = lambda groups: types.SimpleNamespace(data=types.SimpleNamespace(  # noqa: E731
        mode="demographic", mechanisms=[], transformed=groups))
    assert variants.tensors_for("faces", ds(["white", "black"]), 0)["mechanisms"] == ["white", "black"]
    with pytest.raises(SystemExit, match=r"asks for \['indian'\]"):
        variants.tensors_for("faces", ds(["indian"]), 0)


def test_variants_refuse_any_faces_data_override(variants):
    """Strength, image size or groups changed in a faces variant would also run on the prepared
    tensors (which record only the mechanism names), so every data.* change is refused."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    variants.refuse_data_overrides(params, "faces_synthetic",
                                   variants.configure(params, "faces_synthetic", {"train.hysteresis": 0.5}, 1))
    changed = variants.configure(params, "faces_synthetic", {"data.image_size": 64, "data.strength.shift": 6}, 0)
    with pytest.raises(SystemExit, match=r"changes data.image_size, data.strength.*dvc repro classifier@faces_syn"):
        variants.refuse_data_overrides(params, "faces_synthetic", changed)


def test_faces_synthetic_table_keeps_dirty_commits_and_splits_mechanism_sets(variants):
    """A row made off a commit keeps `+dirty` in the table (a 40-digit sha once lost it to the
    8-character cut), and a variant with another mechanism set gets a table of its own."""
    summary = variants.experts_summary(per_expert_section(1.0, [0.9, 0.8, 0.7]))
    base = {"seed": 0, "iterations": 4, "seconds_per_iteration": 0.5, "test_distinct": 2, "test_purity": 0.5,
            "test_purity_min": 0.2, "ssim": 0.7, "canonical_rate": [0.1, 0.2], "psnr": [10.0, 12.0],
            "restoration_min": 0.1, **summary}
    rows = {"eight": [{**base, "commit": "a" * 40, "psnr_per_mechanism": {"shift_up": [12.5, 14.0]}}],
            "first set": [{**base, "commit": "b" * 40 + "+dirty", "psnr_per_mechanism": {"hflip": [14.4, 14.3]}}]}
    lines = variants.table("faces_synthetic", rows, "eight").splitlines()
    assert any(line.startswith(f"| first set | 0 | {'b' * 8}+dirty |") for line in lines)
    assert any(line.startswith(f"| eight | 0 | {'a' * 8} |") for line in lines)
    second = lines.index("| variant | hflip |")
    assert lines[second - 1] == "" and lines[second - 2] == "| eight | 12.5 -> 14.0 |"


def test_bench_ceiling_reads_a_supervised_expert_on_every_digit_under_every_mechanism(tmp_path):
    out = tmp_path / "ceiling.json"
    printed = run("bench/ceiling.py", "--steps", "2", "--threads", "1", "--json", str(out), "--seeds", "0", "1",
                  "--set", "pretrain.max_iterations=10", "classifier.epochs=1")
    saved = json.loads(out.read_text())
    names = yaml.safe_load((ROOT / "params.yaml").read_text())["mnist"]["data"]["mechanisms"]
    assert saved["dataset"] == "mnist" and saved["commit"] == source()
    assert saved["overrides"] == {"pretrain.max_iterations": 10, "classifier.epochs": 1}
    assert [r["seed"] for r in saved["runs"]] == [0, 1]
    for r in saved["runs"]:
        assert list(r["per_mechanism"]) == names and r["steps"] == 2
        assert r["game"] == {}       # a tiny run is not the pipeline's: no game column
        for row in r["per_mechanism"].values():
            assert 0 <= row["acc_input"] <= 1 and 0 <= row["acc_ceiling"] <= 1 and row["mse_ceiling"] > 0
        mean = np.mean([row["acc_ceiling"] for row in r["per_mechanism"].values()])
        assert r["acc_ceiling_all_digits"] == pytest.approx(mean, abs=1e-4)
        assert r["gap_ceiling"] == pytest.approx(r["acc_ceiling_all_digits"] - r["acc_clean_all_digits"], abs=1e-4)
    gaps = [r["gap_ceiling"] for r in saved["runs"]]
    assert saved["gap_ceiling"] == {"mean": pytest.approx(np.mean(gaps), abs=1e-4), "min": min(gaps), "max": max(gaps)}
    assert "supervised ceiling" in printed and all(n in printed for n in names) and "gap_ceiling" in printed


def test_the_supervised_ceiling_expert_learns_to_undo_its_mechanism(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))   # ceiling.py imports its sibling variants.py
    spec = importlib.util.spec_from_file_location("bench_ceiling", ROOT / "bench" / "ceiling.py")
    ceiling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ceiling)
    images, _ = mnist.load_embedded()
    x = torch.as_tensor(images[:64], dtype=torch.float32).unsqueeze(1) / 255   # 64 real digits
    torch.manual_seed(0)
    start = Expert(1, 8)
    start.eval()
    weights = copy.deepcopy(start.state_dict())
    strength = Strength(1, 0.5, torch.Generator().manual_seed(0))
    e = ceiling.supervised(start, x, ("up", "invert"), 1, strength, 100, 16, 3e-3, torch.Generator().manual_seed(0))
    with torch.no_grad():
        before, after = ((start(1 - x) - x) ** 2).mean(), ((e(1 - x) - x) ** 2).mean()
    assert after < 0.1 * before                       # it learnt the inverse from (mechanism, original) pairs
    assert all(torch.equal(weights[k], v) for k, v in start.state_dict().items())   # the game's start is untouched


def test_the_faces_ceiling_rows_read_the_identity_as_zero_and_the_exact_inverse_as_one(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_ceiling", ROOT / "bench" / "ceiling.py")
    ceiling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ceiling)
    strength = FaceStrength(shift=2, cast=0.2, brightness=-0.2, contrast=0.5, band=0.2, blur=0.05)
    names = ["shift_up", "warm_cast"]
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(6, 3, 12, 12, generator=g)     # the cast clips some pixels: its inverse is lossy too
    mech = torch.tensor([0, 0, 0, 1, 1, 1])
    t = {"mechanisms": names, "test_transformed_clean": clean, "test_transformed_mech": mech,
         "test_transformed": apply(tuple(names), clean, mech, strength)}
    identity = ceiling.faces_rows(lambda j: torch.nn.Identity(), t, strength)
    for row in identity["per_mechanism"].values():
        assert row["psnr_supervised"] == row["psnr_inputs"] and row["restoration_supervised"] == 0.0
    assert identity["restoration_min_supervised"] == 0.0

    class Inverse(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x):
            return face_inverse(self.name, x, strength)

    exact = ceiling.faces_rows(lambda j: Inverse(names[j]), t, strength)["per_mechanism"]
    for row in exact.values():    # a shifted-out border and clipped values stay lost, so the inverse is the top
        assert row["restoration_supervised"] == pytest.approx(1.0)
        assert row["psnr_supervised"] == pytest.approx(row["psnr_inverse"], abs=1e-3) and row["psnr_inverse"] < 60
