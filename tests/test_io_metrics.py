import numpy as np
import pytest

from pipeline import metrics
from pipeline.io import atomic_path, save_curves, save_json


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out" / "result.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_failed_directory_write_keeps_the_old_directory(tmp_path):
    target = tmp_path / "curves"
    save_curves(target, {"a": [(1, 0.5)]})
    with pytest.raises(RuntimeError):
        with atomic_path(target, is_dir=True) as tmp:
            (tmp / "b.tsv").write_text("x")
            raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves"]
    assert (target / "a.tsv").read_text() == "step\ta\n1\t0.5\n"


def test_successful_writes_replace(tmp_path):
    save_json({"a": 1}, tmp_path / "m.json")
    save_json({"a": 2}, tmp_path / "m.json")
    assert (tmp_path / "m.json").read_text().strip().endswith("}")
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


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
