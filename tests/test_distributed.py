"""Data-parallel training: the train stage under torchrun (2 CPU processes, gloo) must give the result
of one process over the same global batch, and the CPU fallbacks of the GPU path."""
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from pipeline import loop
from pipeline.distributed import Launch, Parallel
from pipeline.errors import PipelineError
from tests.conftest import copy_project, with_overrides
from tests.test_e2e import dvc

DDP_TRAIN = {"mnist.train.iterations": 12, "mnist.train.batch_size": 12, "mnist.train.reseed_every": 4,
             "mnist.train.reseed_below": 0.9, "mnist.train.reseed_above": 1.0}


def trained(repo):
    return torch.load(repo / "models/mnist/trained.pt", map_location="cpu", weights_only=False)


def set_params(repo, overrides: dict) -> None:
    p = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(with_overrides(p, overrides)))


def test_two_process_ddp_train_matches_one_process_over_the_same_global_batch(tiny_project, tmp_path, params):
    repo = copy_project(tiny_project, tmp_path / "repo")
    set_params(repo, DDP_TRAIN)
    out = dvc(repo, "repro", "train@mnist")               # one process (distributed.nproc: 1)
    assert "Running stage 'train@mnist'" in out and "Running stage 'pretrain@mnist'" not in out
    single = trained(repo)
    log_single = (repo / "reports/plots/mnist/train/plots/metrics/d_loss.tsv").read_text()

    shutil.rmtree(repo / "models/mnist/checkpoints")      # else the 2-process run resumes at the end
    set_params(repo, {"distributed.nproc": 2})
    out = dvc(repo, "repro", "train@mnist")               # the stage relaunches itself under torchrun
    assert "relaunching under torchrun with 2 processes" in out
    assert "rank 1/2 on cpu (gloo)" in out
    double = trained(repo)
    # Tolerance: a tenth of one Adam step (lr 1e-3). Adam turns float-rounding differences in near-zero
    # gradients (sums over 2 ranks vs 1 batch) into steps of that order; measured max 3e-5 (D's fc).
    tol = 0.1 * params["mnist"]["train"]["lr_experts"]
    for part in ("bank", "disc"):
        assert single[part].keys() == double[part].keys()
        for k, a in single[part].items():
            torch.testing.assert_close(double[part][k], a, rtol=0, atol=tol, msg=f"{part}.{k}")
    pre = torch.load(repo / "models/mnist/pretrained.pt", map_location="cpu", weights_only=False)["bank"]
    moved = max((double["bank"][k] - v).abs().max().item() for k, v in pre.items() if v.is_floating_point())
    assert moved > 10 * tol                               # the experts did train (the check is not vacuous)
    # D's loss is all-reduced: the logged curve is the global one.
    a = [float(r.split("\t")[1]) for r in log_single.splitlines()[1:]]
    b = [float(r.split("\t")[1]) for r in (repo / "reports/plots/mnist/train/plots/metrics/d_loss.tsv").read_text().splitlines()[1:]]
    assert len(a) == len(b) == 12 and max(abs(x - y) for x, y in zip(a, b)) < 1e-4


def test_batch_that_does_not_split_evenly_is_a_clear_error():
    bank_disc = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    par = Parallel(1, 2, bank_disc[1], bank_disc[0])
    assert par.shard(8) == slice(4, 8)
    with pytest.raises(PipelineError, match="batch_size 9 must be divisible by the 2 processes"):
        par.shard(9)


def test_nccl_without_cuda_is_refused_before_joining_a_group():
    from pipeline import distributed
    with pytest.raises(PipelineError, match="nccl needs CUDA"):
        distributed.init(Launch(0, 0, 2, 2), "nccl", torch.device("cpu"))


def test_precision_auto_is_fp32_on_cpu_and_bf16_only_when_asked():
    cpu = torch.device("cpu")
    assert loop.autocast_dtype("auto", cpu) is None
    assert loop.autocast_dtype("fp32", cpu) is None
    assert loop.autocast_dtype("bf16", cpu) is torch.bfloat16


def test_device_auto_falls_back_to_cpu_here():
    from pipeline.runtime import resolve_device
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type in (expected, "mps")
    if not torch.cuda.is_available():
        with pytest.raises(PipelineError, match="device 'cuda' is not available"):
            resolve_device("cuda")


def test_torchrun_is_available_to_the_relaunch():
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--nproc_per_node" in r.stdout
