"""Training curves through dvclive, streamed while a stage runs.

`LiveCurves(directory)` owns a dvclive folder: one `plots/metrics/<name>.tsv` per curve (columns
step and the name's last part; "wins/expert_0" -> plots/metrics/wins/expert_0.tsv) and
`metrics.json`, the latest value of every curve and the step reached. `update(curves, step)` appends
the points not yet written, so `dvc exp show` (which reads metrics.json, declared in dvc.yaml) and
`dvc plots show` see a run's progress while it trains, and a resumed run rewrites its restored
points first. dvclive writes no dvc.yaml of its own (`dvcyaml=None`) and makes no experiment
(`save_dvc_exp=False`): the pipeline's dvc.yaml declares the plots.

These folders are the one kind of output written progressively instead of atomically: a run that
fails leaves the points it reached, and DVC records nothing for the failed stage.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from dvclive import Live
from scmrepo.exceptions import SCMError

from pipeline.errors import PipelineError


class LiveCurves:
    def __init__(self, directory: str | Path):
        logging.getLogger("dvclive").setLevel(logging.ERROR)   # no hints about Studio or git on every run
        try:
            self.live = Live(dir=str(directory), resume=False, report=None, save_dvc_exp=False, dvcyaml=None)
        except SCMError as e:   # dvclive 3.49 reads HEAD before it checks that there is one
            raise PipelineError(f"dvclive cannot log the curves to {directory}: git says {e}; make a first "
                                "commit (git add -A && git commit -m init), then rerun") from e
        self.sent: dict[str, int] = {}

    def update(self, curves: dict[str, list[tuple[int, float]]], step: int) -> None:
        """Write every point of `curves` ({name: [(step, value), ...]}) not yet written, then the summary."""
        for name in sorted(curves):
            points = curves[name]
            for s, value in points[self.sent.get(name, 0):]:
                self.live.step = int(s)
                self.live.log_metric(name, float(value))
            self.sent[name] = len(points)
        self.live.step = int(step)
        self.live.make_summary()

    def close(self, curves: dict[str, list[tuple[int, float]]], step: int) -> None:
        self.update(curves, step)
        self.live.end()


def read_curves(directory: str | Path) -> dict[str, list[list[float]]]:
    """The curves a LiveCurves folder holds: {name: [[step, value], ...]}."""
    folder = Path(directory) / "plots" / "metrics"
    return {str(p.relative_to(folder).with_suffix("")): pd.read_csv(p, sep="\t").to_numpy().tolist()
            for p in sorted(folder.rglob("*.tsv"))}
