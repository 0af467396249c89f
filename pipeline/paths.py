"""Where each dataset's files land (see README: "Where things land")."""
from __future__ import annotations

import dataclasses as dc
from pathlib import Path


@dc.dataclass(frozen=True)
class Paths:
    dataset: str
    root: Path = Path(".")

    @property
    def raw(self) -> Path:
        return self.root / "data" / self.dataset / "raw"

    @property
    def prepared(self) -> Path:
        return self.root / "data" / self.dataset / "prepared"

    @property
    def models(self) -> Path:
        return self.root / "models" / self.dataset

    @property
    def checkpoints(self) -> Path:
        return self.models / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.root / "reports" / "metrics" / f"{self.dataset}.json"

    @property
    def plots(self) -> Path:
        return self.root / "reports" / "plots" / self.dataset

    @property
    def figures(self) -> Path:
        return self.root / "reports" / "figures" / self.dataset

    @property
    def report(self) -> Path:
        return self.root / "reports" / f"{self.dataset}.md"
