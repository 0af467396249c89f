"""Figures (matplotlib, Agg) and the markdown report. Pure: data in, files out."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _smooth(v: np.ndarray, k: int = 15) -> np.ndarray:
    if len(v) < k:
        return v
    return np.convolve(v, np.ones(k) / k, mode="valid")


def pick_examples(mech: np.ndarray, digit: np.ndarray | None, n_mech: int, per: int) -> list[int]:
    """Per mechanism j present, `per` samples: those of digit j mod 10 first (when digits are given)."""
    rows = []
    for j in range(n_mech):
        idx = np.flatnonzero(mech == j)
        if digit is not None:
            idx = np.concatenate([idx[digit[idx] == j % 10], idx[digit[idx] != j % 10]])
        rows += [int(i) for i in idx[:per]]
    return rows


def curves_figure(curves: dict[str, list[tuple[int, float]]], n_experts: int, path: Path) -> None:
    """Per-expert loss, score and win counts; D's loss; the periodic specialisation check; and the
    evaluator's verdict on the check batch's winners (curves `monitor/*`)."""
    fig, axes = plt.subplots(2, 3, figsize=(15, 7))
    panels = [("loss", "-log D(E(x)) on won samples"), ("score", "mean D(E(x)) on won samples"),
              ("wins", "samples won per step")]
    cmap = plt.get_cmap("tab10" if n_experts <= 10 else "tab20")
    for ax, (name, title) in zip(axes[0], panels):
        for i in range(n_experts):
            pts = _points(curves, f"{name}/expert_{i}")
            if len(pts):
                y = _smooth(pts[:, 1])
                ax.plot(pts[len(pts) - len(y):, 0], y, color=cmap(i % cmap.N), lw=1, label=f"E{i}")
        ax.set_title(title + " (smoothed)")
    axes[0, 0].legend(ncol=2, fontsize=7)
    pts = _points(curves, "d_loss")
    if len(pts):
        y = _smooth(pts[:, 1])
        axes[1, 0].plot(pts[len(pts) - len(y):, 0], y, color="black", lw=1)
    axes[1, 0].set_title("discriminator BCE loss (smoothed)")
    ax = axes[1, 1]
    for name, style in (("distinct_winners", "-"), ("purity_mean", "--"), ("purity_min", ":")):
        pts = _points(curves, f"specialization/{name}")
        if len(pts):
            y = pts[:, 1] / (max(pts[:, 1].max(), 1) if name == "distinct_winners" else 1)
            ax.plot(pts[:, 0], y, style, label=name + (" (share)" if name == "distinct_winners" else ""))
    ax.set_ylim(0, 1.05)
    ax.set_title("held-out check (argmax assignment)")
    ax.legend(fontsize=8)
    ax = axes[1, 2]
    for name in sorted(k for k in curves if k.startswith("monitor/")):
        pts = _points(curves, name)
        ax.plot(pts[:, 0], pts[:, 1], label=name.split("/", 1)[1])
    ax.set_ylim(0, 1.05)
    ax.set_title("evaluator on the check batch's winners")
    ax.legend(fontsize=8)
    for ax in axes.flat:
        ax.set_xlabel("iteration")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _points(curves: dict, name: str) -> np.ndarray:
    return np.array(curves.get(name, []), dtype=float).reshape(-1, 2)


def heatmap_figure(matrix: np.ndarray, row_names: list[str], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(1 + 0.55 * matrix.shape[1], 1 + 0.45 * matrix.shape[0]))
    ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(matrix.shape[1]), [f"E{i}" for i in range(matrix.shape[1])])
    ax.set_yticks(range(matrix.shape[0]), row_names)
    for (j, i), v in np.ndenumerate(matrix):
        ax.text(i, j, str(v), ha="center", va="center", fontsize=7,
                color="white" if v < matrix.max() / 2 else "black")
    ax.set_xlabel("winning expert")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sample_grid_figure(clean: np.ndarray, trans: np.ndarray, outputs: np.ndarray, winner: np.ndarray,
                       row_names: list[str], first_title: str, path: Path, dead: list[bool] | None = None) -> None:
    """Rows: samples. Columns: canonical (`first_title`) | transformed | every expert's output; winner framed red.
    Images are (N, C, H, W) in [0, 1]; outputs is (N, N', C, H, W). `dead[i]` (from the metrics'
    per_expert section): expert i's column is titled "Ei dead" in red, so a collapsed expert cannot
    pass for a working one at a glance."""
    n, k = outputs.shape[:2]
    dead = dead or [False] * k
    fig, axes = plt.subplots(n, k + 2, figsize=(0.9 * (k + 2), 0.95 * n + 0.15), squeeze=False)

    def show(ax, img):
        img = np.transpose(img, (1, 2, 0))
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])

    for r in range(n):
        show(axes[r, 0], clean[r])
        show(axes[r, 1], trans[r])
        axes[r, 0].set_ylabel(row_names[r], rotation=0, ha="right", va="center", fontsize=8)
        for i in range(k):
            ax = axes[r, i + 2]
            show(ax, outputs[r, i])
            if i == winner[r]:
                for s in ax.spines.values():
                    s.set_color("red")
                    s.set_linewidth(2.5)
    for c, title in enumerate([first_title, "transformed"] + [f"E{i}" for i in range(k)]):
        axes[0, c].set_title(title, fontsize=8)
    for i in (i for i in range(k) if dead[i]):
        axes[0, i + 2].set_title(f"E{i} dead", fontsize=8, color="red", fontweight="bold")
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def dead_experts(metrics: dict, n: int) -> list[bool] | None:
    """Per expert, whether the metrics call it dead; None if they do not say (older metrics)."""
    per = metrics.get("per_expert")
    return None if per is None else [bool(per.get(f"expert_{i}", {}).get("dead")) for i in range(n)]


def _table(title: str, first: str, rows: dict[str, dict]) -> list[str]:
    cols = list(next(iter(rows.values())))
    lines = [f"## {title}", "", f"| {first} | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v)
                                                for v in row.values()) + " |")
    return lines + [""]


def markdown(title: str, metrics: dict, figures: dict[str, str], extra: str = "", targets: list[str] = ()) -> str:
    """The report: the targets (the README's marks, pipeline/targets.py), headline metrics,
    per-mechanism and per-expert tables, figures, and any extra sections."""
    lines = [f"# {title}", "", "Generated by `dvc repro` (stage `report`); do not edit by hand.", ""]
    if targets:
        lines += ["## targets", ""] + [f"- {t}" for t in targets] + [""]
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    tables = {"summary": scalars} if scalars else {}
    tables.update({k: v for k, v in metrics.items() if isinstance(v, dict) and not k.startswith(("per_", "assign"))})
    for section, values in tables.items():
        lines += [f"## {section}", "", "| metric | value |", "|---|---|"]
        for k, v in values.items():
            lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
        lines.append("")
    per = metrics.get("per_mechanism", metrics.get("per_group", {}))
    if per:
        lines += _table("per mechanism (held-out test set)", "mechanism", per)
    if metrics.get("per_expert"):
        lines += _table("per expert (every expert on every test input)", "expert", metrics["per_expert"])
    for caption, rel in figures.items():
        lines += [f"## {caption}", "", f"![{caption}]({rel})", ""]
    return "\n".join(lines) + ("\n" + extra if extra else "")
