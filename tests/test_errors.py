"""Mistakes a person can make outside params.yaml give one clear PipelineError, not a traceback:
a missing upstream file, weights that no longer fit the model, an archive whose members clash,
more processes than GPUs."""
from __future__ import annotations

import io
import re
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from pipeline.data import sources
from pipeline.distributed import check_gpu_count
from pipeline.errors import PipelineError
from pipeline.io import load_json, load_torch, load_weights, save_json, save_torch

# ---- missing upstream files ---------------------------------------------------------------------

@pytest.mark.parametrize("load", [load_json, load_torch])
def test_missing_upstream_file_says_which_and_what_to_run(tmp_path, load):
    path = tmp_path / "models" / "pretrained.pt"
    with pytest.raises(PipelineError) as e:
        load(path)
    assert str(e.value) == f"missing input {path}; run the upstream stage first (dvc repro)"


def test_present_files_load_as_before(tmp_path):
    save_json({"a": [1, 2]}, tmp_path / "m.json")
    save_torch({"w": torch.ones(2)}, tmp_path / "w.pt")
    assert load_json(tmp_path / "m.json") == {"a": [1, 2]}
    assert torch.equal(load_torch(str(tmp_path / "w.pt"))["w"], torch.ones(2))


# ---- weights that no longer fit the model -------------------------------------------------------

def _stale(kind: str) -> dict:
    """A state dict for nn.Linear(3, 2) as saved by an older version of the code."""
    good = torch.nn.Linear(3, 2).state_dict()
    return {"shape": torch.nn.Linear(4, 2).state_dict(), "missing": {"weight": good["weight"]},
            "unexpected": {**good, "scale": torch.ones(1)}}[kind]


@pytest.mark.parametrize("kind, detail", [
    ("shape", "size mismatch for weight: copying a param with shape torch.Size([2, 4])"),
    ("missing", 'Missing key(s) in state_dict: "bias"'),
    ("unexpected", 'Unexpected key(s) in state_dict: "scale"'),
])
def test_weights_that_do_not_fit_name_the_file_and_the_fix(kind, detail):
    with pytest.raises(PipelineError) as e:
        load_weights(torch.nn.Linear(3, 2), _stale(kind), "models/mnist/pretrained.pt", stage="pretrain@mnist")
    msg = str(e.value)
    assert msg.startswith(f"models/mnist/pretrained.pt does not match the current model ({detail}")
    assert msg.endswith("; rerun the stage that makes it (dvc repro -f pretrain@mnist) or restore matching params")
    assert "\n" not in msg


def test_several_mismatches_are_counted_and_the_stage_is_optional():
    with pytest.raises(PipelineError, match=r"\(size mismatch for weight: .*; and 1 more\).*dvc repro -f <stage>"):
        load_weights(torch.nn.Linear(3, 2), torch.nn.Linear(4, 5).state_dict(), "w.pt")


def test_matching_weights_load():
    src, dst = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    load_weights(dst, src.state_dict(), "w.pt")
    assert torch.equal(dst.weight, src.weight) and torch.equal(dst.bias, src.bias)


# ---- archive members that clash -----------------------------------------------------------------

def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _tar(path: Path, members: list[tuple[str, bool]]) -> Path:
    """A tar of (name, is folder) members, in order; files hold one byte."""
    with tarfile.open(path, "w") as tar:
        for name, is_dir in members:
            m = tarfile.TarInfo(name)
            if is_dir:
                m.type = tarfile.DIRTYPE
                tar.addfile(m)
            else:
                m.size = 1
                tar.addfile(m, io.BytesIO(b"x"))
    return path


def test_repeated_zip_member_is_refused_not_silently_overwritten(tmp_path):
    archive = tmp_path / "faces.zip"
    with warnings.catch_warnings(), zipfile.ZipFile(archive, "w") as z:
        warnings.simplefilter("ignore", UserWarning)        # zipfile warns "Duplicate name"
        z.writestr("UTKFace/1_0_0_1.jpg", b"one")
        z.writestr("UTKFace/1_0_0_1.jpg", b"two")
    with pytest.raises(PipelineError) as e:
        sources.safe_extract(archive, tmp_path / "out" / "data")
    assert str(e.value).startswith(f"data: archive {archive} has member 'UTKFace/1_0_0_1.jpg' clashing with "
                                   "member 'UTKFace/1_0_0_1.jpg'")
    assert "\n" not in str(e.value) and leftovers(tmp_path / "out") == []


def test_zip_file_and_folder_of_one_name_are_refused(tmp_path):
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("UTKFace", b"a file")
        z.writestr("UTKFace/", b"")
    with pytest.raises(PipelineError, match="has member 'UTKFace/' clashing with member 'UTKFace'"):
        sources.safe_extract(archive, tmp_path / "out" / "data")


@pytest.mark.parametrize("members, member, first", [
    ([("a", False), ("a/b", False)], "a/b", "a"),           # a file where a folder is needed
    ([("a/b", False), ("a", False)], "a", "a/b"),
    ([("a", True), ("a", False)], "a", "a"),                # a folder, then a file of the same name
    ([("a", False), ("a/", True)], "a", "a"),            # (tarfile drops a folder's trailing /)
    ([("d/a", False), ("./d/a", False)], "./d/a", "d/a"),   # two spellings of one path
])
def test_tar_file_and_folder_of_one_name_are_refused(tmp_path, members, member, first):
    archive = _tar(tmp_path / "faces.tar", members)
    with pytest.raises(PipelineError, match=re.escape(f"{archive} has member {member!r} clashing with member "
                                                      f"{first!r}")):
        sources.safe_extract(archive, tmp_path / "out" / "data")
    assert leftovers(tmp_path / "out") == []


def test_repeated_folders_are_fine(tmp_path):
    archive = _tar(tmp_path / "faces.tar", [("a", True), ("a/b", False), ("a/", True), ("./a", True),
                                            ("a/c", True), ("a/c/d", False)])
    assert sources.safe_extract(archive, tmp_path / "data") == ["a/b", "a/c/d"]
    assert (tmp_path / "data" / "a" / "c" / "d").read_bytes() == b"x"


# ---- more processes than GPUs -------------------------------------------------------------------

def test_more_processes_than_gpus_is_refused():
    check_gpu_count(2, 2)
    check_gpu_count(1, 8)
    with pytest.raises(PipelineError) as e:
        check_gpu_count(4, 2)
    assert str(e.value) == ("params: distributed.nproc is 4 but only 2 CUDA devices are visible; "
                            "set distributed.nproc <= 2 or use device: cpu")
