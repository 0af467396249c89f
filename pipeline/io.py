"""Atomic file output (everything is written to a temporary sibling and renamed into place), and
loading of stage inputs with one clear error when they are missing or no longer fit the code."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import PipelineError


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def _swap_in(tmp: Path, path: Path) -> None:
    """Put `tmp` at `path`. An old `path` is renamed aside first and deleted only once the new one is
    in place, so a failure in between loses nothing: an error puts the old one back, and after a
    hard crash it is still there as the `.<name>.*.old` sibling."""
    if not path.exists():
        os.replace(tmp, path)
        return
    aside = tmp.with_name(tmp.name + ".old")
    os.replace(path, aside)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(aside, path)
        raise
    _remove(aside)


@contextlib.contextmanager
def atomic_path(path: str | Path, is_dir: bool = False):
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod((0o777 if is_dir else 0o666) & ~umask)  # mkstemp/mkdtemp make private (0600/0700) files
    try:
        yield tmp
        if is_dir:
            _swap_in(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            _remove(tmp)


def _require(path: str | Path) -> None:
    """A stage input that is absent means its producing stage has not run (or its output was removed)."""
    if not Path(path).exists():
        raise PipelineError(f"missing input {path}; run the upstream stage first (dvc repro)")


def save_json(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def load_json(path: str | Path):
    _require(path)
    return json.loads(Path(path).read_text())


def save_torch(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | Path):
    _require(path)
    return torch.load(path, map_location="cpu", weights_only=False)


def load_weights(module: nn.Module, state_dict: dict, what: str, stage: str | None = None) -> None:
    """`module.load_state_dict(state_dict)`, but weights saved for another shape of the model (the
    params or code changed since) give one PipelineError saying how to remake them, not a traceback.
    `what` names the weights in the message (e.g. "models/mnist/pretrained.pt"); `stage`, when
    given, the DVC stage that makes them. On error the module may be partly loaded: the stage stops."""
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        if not lines or not lines[0].startswith("Error(s) in loading state_dict"):
            raise
        details = lines[1:] or lines
        more = f"; and {len(details) - 1} more" if len(details) > 1 else ""
        raise PipelineError(
            f"{what} does not match the current model ({details[0].rstrip('. ')}{more}); rerun the stage "
            f"that makes it (dvc repro -f {stage or '<stage>'}) or restore matching params") from e


def save_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
