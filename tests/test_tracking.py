"""The training curves through dvclive (pipeline/tracking.py): streamed, resumable, read back."""
import json
import subprocess

import pytest

from pipeline.errors import PipelineError
from pipeline.tracking import LiveCurves, read_curves


def test_curves_stream_in_increments_and_read_back(tmp_path):
    folder = tmp_path / "train"
    curves = {"d_loss": [(1, 0.5), (2, 0.25)], "wins/expert_0": [(1, 3)]}
    live = LiveCurves(folder)
    live.update(curves, 2)
    assert (folder / "plots/metrics/d_loss.tsv").read_text().splitlines() == ["step\td_loss", "1\t0.5", "2\t0.25"]
    assert json.loads((folder / "metrics.json").read_text()) == {"d_loss": 0.25, "wins": {"expert_0": 3.0}, "step": 2}
    curves["d_loss"].append((3, 0.125))
    live.close(curves, 3)   # only the new point is appended
    assert read_curves(folder) == {"d_loss": [[1, 0.5], [2, 0.25], [3, 0.125]], "wins/expert_0": [[1, 3.0]]}
    assert json.loads((folder / "metrics.json").read_text())["step"] == 3


def test_a_new_run_replaces_the_old_curves_and_replays_restored_points(tmp_path):
    folder = tmp_path / "train"
    LiveCurves(folder).close({"d_loss": [(1, 9.0), (2, 9.0), (3, 9.0)], "old": [(1, 1.0)]}, 3)
    restored = {"d_loss": [(1, 0.5)]}      # a resumed run: its checkpoint's points come first
    live = LiveCurves(folder)
    live.update(restored, 1)
    restored["d_loss"].append((2, 0.4))
    live.close(restored, 2)
    assert read_curves(folder) == {"d_loss": [[1, 0.5], [2, 0.4]]}


def test_a_git_repository_without_commits_is_one_clear_error(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="make a first commit"):
        LiveCurves(tmp_path / "train")
