"""The one end-to-end test: `dvc repro` in a temporary copy of the repo with shrunk params."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, copy_project, with_overrides

TINY = {
    "datasets": ["mnist"],
    "mnist.classifier.epochs": 1,
    "mnist.experts.num_experts": 3,
    "mnist.experts.channels": 8,
    "mnist.pretrain.max_iterations": 5,
    "mnist.train.iterations": 8,
    "mnist.train.check_every": 4,
    "mnist.train.checkpoint_every": 4,
    "mnist.train.check_size": 50,
    "mnist.data.mechanisms": ["up", "invert", "noise"],
    "transfer.max_images": 36,
    "seeds.values": [0, 1],
    "latent.datasets": [],
    "debias.datasets": [],
}


def dvc(cwd, *args, env: dict | None = None):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **(env or {})}
    r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def make_repo(root: Path, params: dict) -> Path:
    """A git + DVC project in `root` with this repo's code and pipeline, and `params`."""
    for item in ("pipeline", "dvc.yaml", ".dvcignore", ".gitignore", ".dvc/.gitignore", "reports/variants"):
        src = ROOT / item
        (root / item).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / item)
    shutil.copy(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    for key, value in (("user.name", "ICM tests"), ("user.email", "icm-tests@example.invalid")):
        subprocess.run(["git", "config", key, value], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)   # dvclive needs a commit (pipeline/tracking.py)
    subprocess.run(["git", "commit", "-q", "-m", "project"], cwd=root, check=True)
    return root


def test_repro_follows_the_metrics_contract_and_reruns_only_what_changed(tiny_project, tmp_path):
    # conftest.tiny_project is this test's first `dvc repro` of TINY (shared with the workflow tests);
    # the no-op and rerun checks below work on a private copy of it.
    out = (tiny_project.parent / "repro.out").read_text()
    repo = copy_project(tiny_project, tmp_path / "repo")
    m = json.loads((repo / "reports/metrics/mnist.json").read_text())
    for section, fields in {
        "classifier": {"acc_clean": float, "acc_clean_same_digits": float, "acc_transformed": float,
                       "acc_experts": float, "acc_clean_all_digits": float, "acc_experts_all_digits": float},
        "specialization": {"n_mechanisms": int, "n_experts": int, "distinct_winners": int,
                           "purity_mean": float, "purity_min": float},
        "train": {"iterations": int, "seconds": float, "iters_per_second": float},
    }.items():
        for key, tp in fields.items():
            assert isinstance(m[section][key], tp), (section, key, m[section][key])
    for key in ("iterations_to_specialize", "seconds_to_specialize"):
        assert m["train"][key] is None or isinstance(m["train"][key], (int, float))
    assert all(0 <= m["classifier"][k] <= 1 for k in m["classifier"])
    assert m["specialization"]["n_mechanisms"] == 3 and m["specialization"]["n_experts"] == 3
    assert 0 <= m["specialization"]["distinct_winners"] <= 3
    assert m["train"]["iterations"] == 8
    for fig in ("curves.png", "assignment.png", "samples.png"):
        assert (repo / "reports/figures/mnist" / fig).stat().st_size > 1000
    assert "![training curves](figures/mnist/curves.png)" in (repo / "reports/mnist.md").read_text()
    assert (repo / "reports/plots/mnist/train/plots/metrics/loss").is_dir()
    assert (repo / "models/mnist/checkpoints/complete.json").exists()     # a finished run: nothing to resume
    assert not (repo / "models/mnist/checkpoints/train.pt").exists()
    assert "Running stage 'train@mnist'" in out
    transfer = json.loads((repo / "reports/metrics/mnist_transfer.json").read_text())
    if os.environ.get("ICM_DATA_MIRROR"):      # the paper's Omniglot transfer (the mirror has the zips)
        assert transfer["n_characters"] == 36 and 0 <= transfer["owner_agreement"] <= 3
        assert set(transfer["per_mechanism"]) == {"up", "invert", "noise"}
        assert all(r["mse_inputs"] > 0 for r in transfer["per_mechanism"].values())
        assert (repo / "reports/figures/mnist_transfer/samples.png").stat().st_size > 1000
    else:
        assert transfer["skipped"] is True and "Omniglot" in transfer["reason"]

    # The seeds sweep: every run's headlines and their spread; seed 0 repeats the main chain.
    sweep = json.loads((repo / "reports/metrics/mnist_seeds.json").read_text())
    assert sweep["seeds"] == [0, 1] and [r["seed"] for r in sweep["runs"]] == [0, 1]
    first = sweep["runs"][0]
    for key in ("specialization.distinct_winners", "specialization.purity_mean", "classifier.acc_clean",
                "classifier.acc_experts", "dead_experts"):
        section, _, name = key.rpartition(".")
        assert first[key] == pytest.approx(m[section][name] if section else m[name], abs=1e-3), key
        values = [r[key] for r in sweep["runs"]]
        assert sweep["min"][key] == pytest.approx(min(values), abs=1e-4)
        assert sweep["mean"][key] == pytest.approx(sum(values) / 2, abs=1e-4)
    assert sweep["std"]["classifier.acc_clean"] > 0        # another split and init: another draw

    start = time.perf_counter()
    assert "Running stage" not in dvc(repo, "repro")       # no-op: nothing changed
    assert time.perf_counter() - start < 30

    params = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(with_overrides(params, {"mnist.train.lr_experts": 0.002})))
    out = dvc(repo, "repro")
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"train@mnist", "evaluate@mnist", "report@mnist", "transfer@mnist", "seeds@mnist"}
