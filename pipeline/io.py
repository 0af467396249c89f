"""Atomic file output: everything is written to a temporary sibling and renamed into place."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch


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
        if is_dir and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def save_json(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def load_json(path: str | Path):
    return json.loads(Path(path).read_text())


def save_torch(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | Path):
    return torch.load(path, map_location="cpu", weights_only=False)


def save_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_curves(directory: str | Path, curves: dict[str, list[tuple[int, float]]]) -> None:
    """Write each curve as `<directory>/<name>.tsv` (columns: step, <last part of name>), all at once."""
    with atomic_path(directory, is_dir=True) as tmp:
        for name, points in curves.items():
            path = tmp / f"{name}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            field = Path(name).name
            lines = [f"step\t{field}"] + [f"{s}\t{v:.6g}" for s, v in points]
            path.write_text("\n".join(lines) + "\n")
