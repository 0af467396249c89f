"""Every entry point outside pipeline/stages runs here at a tiny size, so a benchmark cannot rot
unnoticed again (bench/experts.py once failed with an AttributeError that no test saw)."""
import json
import subprocess
import sys

from tests.conftest import ROOT


def run(*args, cwd=ROOT):
    done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_bench_experts_measures_every_form_against_the_plain_step(tmp_path):
    out = tmp_path / "experts.json"
    run("bench/experts.py", "--seconds", "0.2", "--experts", "2", "--json", str(out))
    saved = json.loads(out.read_text())
    rows = saved["rows"]
    assert saved["commit"] and saved["threads"] >= 1 and saved["batch"] == 32
    assert [r["variant"] for r in rows] == ["plain (reference)", "ours per-expert NCHW", "ours per-expert ch-last",
                                            "ours batched ch-last"]
    assert all(r["n_experts"] == 2 and r["iters_per_second"] > 0 and r["non_view_ops"] > 0 for r in rows)
    assert rows[0]["speedup"] == 1.0 and rows[0]["non_view_ratio"] == 1.0
    assert rows[3]["non_view_ops"] < rows[0]["non_view_ops"]     # the batched form launches fewer kernels


def test_bench_variants_writes_a_sourced_row_and_its_table(tmp_path):
    out = tmp_path / "v"
    run("bench/variants.py", "--dataset", "mnist", "--only", "capacity 1.0", "--seeds", "0", "--cap", "25",
        "--no-stop", "--threads", "1", "--out", str(out))
    rows = json.loads(out.with_suffix(".json").read_text())["capacity 1.0"]
    assert len(rows) == 1 and rows[0]["iterations"] == 25 and 0 <= rows[0]["distinct_winners"] <= 10
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert rows[0]["commit"].split("+")[0] == head                     # every row names its source
    assert rows[0]["overrides"] == {"train.reseed_every": 0, "train.lr_final_fraction": 1.0,
                                    "train.capacity_factor": 1.0}
    assert rows[0]["params"]["train"]["capacity_factor"] == 1.0
    table = out.with_suffix(".md").read_text()
    assert "| capacity 1.0 | 0 |" in table
