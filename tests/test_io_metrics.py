import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline import metrics
from pipeline.io import atomic_path, save_json


def save_dir(target: Path, files: dict[str, str]) -> None:
    """A folder of text files, written atomically (as the figure and placeholder outputs are)."""
    with atomic_path(target, is_dir=True) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text)


A, B = {"a.tsv": "step\ta\n1\t0.5\n"}, {"b.tsv": "step\tb\n2\t0.25\n"}


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out" / "result.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_failed_directory_write_keeps_the_old_directory(tmp_path):
    target = tmp_path / "curves"
    save_dir(target, A)
    with pytest.raises(RuntimeError):
        with atomic_path(target, is_dir=True) as tmp:
            (tmp / "b.tsv").write_text("x")
            raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves"]
    assert (target / "a.tsv").read_text() == "step\ta\n1\t0.5\n"


def test_successful_writes_replace(tmp_path):
    save_json({"a": 1}, tmp_path / "m.json")
    save_json({"a": 2}, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_directory_replace_swaps_the_old_one_out_only_after_the_new_one_is_in(tmp_path):
    target = tmp_path / "curves"
    save_dir(target, A)
    save_dir(target, B)
    assert sorted(p.name for p in target.iterdir()) == ["b.tsv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves"]


def test_failure_between_the_renames_keeps_the_old_directory(tmp_path, monkeypatch):
    target = tmp_path / "curves"
    save_dir(target, A)
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:                  # old moved aside, new not yet in place
            assert not target.exists()
            raise OSError("disk gone")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk gone"):
        save_dir(target, B)
    assert calls[0][0] == "curves" and calls[1][1] == "curves" and calls[2] == (calls[0][1], "curves")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves"]
    assert (target / "a.tsv").read_text() == "step\ta\n1\t0.5\n"


def test_hard_crash_between_the_renames_loses_nothing(tmp_path, monkeypatch):
    """A killed process runs no clean-up: the old folder must still exist (aside), and the new one too."""
    target = tmp_path / "curves"
    save_dir(target, A)
    real, calls = os.replace, []

    class Killed(BaseException):
        pass

    def replace(src, dst):
        calls.append(src)
        if len(calls) >= 2:                  # dead after moving the old folder aside: nothing more runs
            raise Killed
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: None)   # as if killed: no clean-up runs
    monkeypatch.setattr(Path, "unlink", lambda *a, **k: None)
    with pytest.raises(Killed):
        save_dir(target, B)
    files = {p.relative_to(tmp_path).parts[-1]: p.read_text() for p in tmp_path.rglob("*.tsv")}
    assert files == {"a.tsv": "step\ta\n1\t0.5\n", "b.tsv": "step\tb\n2\t0.25\n"}


def test_assignment_purity_and_distinct_winners():
    mech = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    win = np.array([1, 1, 0, 2, 2, 2, 2, 2])
    m = metrics.assignment_matrix(mech, win, 3, 3)
    assert m.tolist() == [[1, 2, 0], [0, 0, 3], [0, 0, 2]]
    assert np.allclose(metrics.purity(m), [2 / 3, 1, 1])
    # mechanisms 1 and 2 share their dominant expert 2, so only mechanism 0 counts
    assert metrics.distinct_winners(m) == 1
    assert not metrics.specialized(m, 0.5)


def test_specialized_needs_distinct_owners_and_purity():
    m = np.array([[9, 1], [0, 10]])
    assert metrics.specialized(m, 0.9)
    assert not metrics.specialized(m, 0.95)
    assert metrics.distinct_winners(m) == 2


def test_report_examples_show_a_different_digit_per_mechanism():
    from pipeline.report import pick_examples

    mech = np.array([0, 0, 1, 1, 2])
    digit = np.array([5, 0, 3, 1, 7])
    assert pick_examples(mech, digit, 4, 1) == [1, 3, 4]   # digit 0, digit 1, no digit 2 -> first; none for 3
    assert pick_examples(mech, None, 4, 2) == [0, 1, 2, 3, 4]   # faces: the first two of each
