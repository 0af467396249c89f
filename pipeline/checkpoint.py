"""Resumable training checkpoints that can never hand back a stale result.

A checkpoint is resumed only if (a) the run that wrote it was interrupted before its last
iteration, and (b) everything that determines training is unchanged: the params, the input
tensors' identities (pretrained weights, classifier), and the source of every `pipeline` module
loaded in this process. A finished run leaves only a small marker (`complete.json`), so a rerun
caused by any dep change, or by `dvc repro -f`, trains from iteration 0.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from pipeline.io import atomic_path, load_torch, save_torch

STATE, DONE = "train.pt", "complete.json"


def code_files(package: str = "pipeline") -> list[Path]:
    """Source files of the `package` modules imported so far (the code that is about to train)."""
    files = {Path(m.__file__) for name, m in list(sys.modules.items())
             if (name == package or name.startswith(package + ".")) and getattr(m, "__file__", None)}
    return sorted(files)


def fingerprint(settings, tensors: dict[str, dict[str, torch.Tensor]], files: list[Path]) -> str:
    """sha256 over JSON `settings`, every tensor of each named state dict (values, not files: a file
    may also hold wall-clock times) and the bytes of `files` (named by file name)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for group, state in sorted(tensors.items()):
        for name, t in sorted(state.items()):
            if isinstance(t, torch.Tensor):
                digest.update(f"{group}/{name}".encode() + t.detach().cpu().contiguous().numpy().tobytes())
    for f in files:
        digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()


def resumable(directory: Path, fp: str) -> tuple[dict | None, str]:
    """(saved training state or None, why). Removes temp files left by a save that was killed."""
    for stale in directory.glob(f".{STATE}.*"):
        stale.unlink(missing_ok=True)
    path = directory / STATE
    if not path.exists():
        done = (directory / DONE).exists()
        return None, "the previous run finished" if done else "no checkpoint"
    saved = load_torch(path)
    if saved.get("fingerprint") != fp:
        return None, f"{path} was made with other params, inputs or code"
    return saved["state"], f"resuming from {path} at iteration {saved['state']['iteration']}"


def save(directory: Path, fp: str, state: dict) -> None:
    """An interrupted-run checkpoint (atomic)."""
    save_torch({"fingerprint": fp, "state": state}, directory / STATE)


def finish(directory: Path, iterations: int) -> None:
    """Replace the folder by a marker of a finished run: nothing in it can be resumed."""
    with atomic_path(directory, is_dir=True) as tmp:
        (tmp / DONE).write_text(json.dumps({"complete": True, "iterations": iterations}) + "\n")
