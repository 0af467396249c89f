"""Process-level setup shared by the stage entry points: device, seeding, determinism, errors."""
from __future__ import annotations

import functools
import os
import sys
import time

import torch

from pipeline.errors import PipelineError


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device that is absent is an error."""
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if name == "auto":
        name = next(d for d in ("cuda", "mps", "cpu") if available[d])
    if not available[name]:
        raise PipelineError(f"params: device '{name}' is not available here; use device: auto or cpu")
    return torch.device(name)


def setup(seed: int, device_name: str) -> torch.device:
    """Seed torch's global generator (for module initialisation) and turn on deterministic kernels."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_flush_denormal(True)  # tiny late-training values otherwise slow CPU kernels down
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return resolve_device(device_name)


def images_to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move an image batch to `device` in channels-last layout (1.4x faster convolutions on CPU)."""
    return x.to(device).contiguous(memory_format=torch.channels_last)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main(fn):
    """Wrap a stage entry point: PipelineError -> one line on stderr and exit code 1."""
    @functools.wraps(fn)
    def wrapper():
        if len(sys.argv) != 2:
            print(f"usage: python -m {fn.__module__} <dataset>", file=sys.stderr)
            sys.exit(2)
        try:
            fn(sys.argv[1])
        except PipelineError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
    return wrapper


def skip_if_unavailable(paths, stage: str, outputs: list) -> bool:
    """If the download stage found no data (FaceARG absent), write each declared output as a small
    placeholder saying why (a folder gets SKIPPED.txt), log it, and return True; else False."""
    from pipeline.io import atomic_path, load_json, save_json, save_text

    status = load_json(paths.raw / "status.json")
    if status["available"]:
        return False
    for out in outputs:
        if out.suffix:
            if out.suffix == ".md":
                save_text(f"# {paths.dataset}: skipped\n\n{status['message']}\n", out)
            else:
                save_json({"skipped": True, "reason": status["message"]}, out)
        else:
            with atomic_path(out, is_dir=True) as tmp:
                (tmp / "SKIPPED.txt").write_text(status["message"] + "\n")
    log(f"{stage}: skipped: {status['message']}")
    return True
