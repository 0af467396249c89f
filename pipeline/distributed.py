"""Data-parallel competitive training across processes (torchrun + DistributedDataParallel).

Every rank holds the same experts, discriminator and optimisers, and draws the same global batch
indices from the shared generator; it computes only its own contiguous slice of the batch. What must
be global stays global:
- D's loss gradient is averaged by DDP (equal slices, so the mean of the ranks' means is the global mean);
- the winners are assigned on the all-gathered (B, N') scores, so capacity limits act on the global
  batch exactly as in one process;
- the winners' loss is averaged by DDP with `find_unused_parameters`, so an expert that won nothing on
  this rank still takes part in the all-reduce (its gradient slot is zero here), and an expert that won
  nothing on any rank gets no update at all.
With one process (`Parallel.single`) the plain modules are used and no collective is called.
"""
from __future__ import annotations

import dataclasses as dc
import os
import subprocess
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pipeline.errors import PipelineError
from pipeline.models.experts import ExpertBank


class Assigned(nn.Module):
    """`bank.forward_assigned` as a module's forward, so that DDP can wrap it."""

    def __init__(self, bank: ExpertBank):
        super().__init__()
        self.bank = bank

    def forward(self, x: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        return self.bank.forward_assigned(x, owner)


@dc.dataclass(frozen=True)
class Parallel:
    """How one training step talks to the other ranks. `disc` is used for D's own loss and
    `assigned` for the winners' pass (DDP wrappers when world > 1, plain modules otherwise)."""
    rank: int
    world: int
    disc: nn.Module
    assigned: nn.Module

    @staticmethod
    def single(bank: ExpertBank, disc: nn.Module) -> "Parallel":
        return Parallel(0, 1, disc, Assigned(bank))

    @staticmethod
    def ddp(bank: ExpertBank, disc: nn.Module, rank: int, world: int, device: torch.device) -> "Parallel":
        ids = [device.index] if device.type == "cuda" else None
        return Parallel(rank, world,
                        DistributedDataParallel(disc, device_ids=ids, broadcast_buffers=False),
                        DistributedDataParallel(Assigned(bank), device_ids=ids, broadcast_buffers=False,
                                                find_unused_parameters=True))

    def shard(self, batch: int) -> slice:
        """This rank's contiguous slice of a global batch of `batch` samples."""
        if batch % self.world:
            raise PipelineError(f"params: train.batch_size {batch} must be divisible by the "
                                f"{self.world} processes (distributed.nproc)")
        n = batch // self.world
        return slice(self.rank * n, (self.rank + 1) * n)

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's `t` along dim 0, in rank order (= the global batch order)."""
        if self.world == 1:
            return t
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    def mean(self, value: float, device: torch.device) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return float(t) / self.world


@dc.dataclass(frozen=True)
class Launch:
    """This process's place in a torchrun launch (world 1 when not launched by torchrun)."""
    rank: int
    local_rank: int
    world: int
    local_world: int

    @staticmethod
    def single() -> "Launch":
        return Launch(0, 0, 1, 1)

    @staticmethod
    def from_env() -> "Launch":
        env = os.environ
        return Launch(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1)),
                      int(env.get("LOCAL_WORLD_SIZE", 1)))


def relaunch_under_torchrun(nproc: int, module: str, args: list[str]) -> int:
    """Run `python -m module args` as `nproc` local processes under torchrun; returns its exit code."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", module, *args]
    return subprocess.run(cmd).returncode


def check_gpu_count(nproc: int, visible: int) -> None:
    """One process per GPU: more processes than GPUs would fail deep inside CUDA or NCCL set-up."""
    if nproc > visible:
        raise PipelineError(f"params: distributed.nproc is {nproc} but only {visible} CUDA devices are visible; "
                            f"set distributed.nproc <= {visible} or use device: cpu")


def init(launch: Launch, backend: str, device: torch.device) -> torch.device:
    """Join the process group; returns this rank's device (cuda:<local rank> on GPUs).
    `backend` auto: nccl on CUDA, gloo on CPU."""
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "mps":
        raise PipelineError("params: distributed.nproc > 1 is not supported on MPS; use device: cpu or nproc: 1")
    if backend == "nccl" and device.type != "cuda":
        raise PipelineError(f"params: distributed.backend nccl needs CUDA devices, but the device is {device}; "
                            "use backend gloo (or auto)")
    if device.type == "cuda":
        check_gpu_count(launch.local_world, torch.cuda.device_count())
        device = torch.device("cuda", launch.local_rank)
        torch.cuda.set_device(device)
    else:  # share the cores between the local ranks (torchrun would otherwise leave 1 thread each)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // launch.local_world))
    dist.init_process_group(backend, rank=launch.rank, world_size=launch.world)
    return device
