"""UTKFace names and folder scan, plus face-image helpers shared by every face source."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from pipeline.errors import PipelineError

RACES = ("white", "black", "asian", "indian", "others")  # index = UTKFace race code
COLUMNS = ["file", "age", "gender", "race", "source"]     # age/gender are -1 when unknown
SKIP_COLUMNS = ["file", "reason"]
UTK_SUFFIXES = (".jpg.chip.jpg", ".jpg")
# one real file has a space before ".jpg" ("24_0_1_20170116220224657 .jpg.chip.jpg"): it is kept
UTK_NAME = re.compile(r"([0-9]{1,3})_([0-9])_([0-9])_[0-9]+ ?")
UTK_BAD_NAME = ("malformed UTKFace name (want [age]_[gender]_[race]_[datetime].jpg.chip.jpg "
                "with age 0-120, gender 0/1, race 0-4)")


def parse_utk_name(name: str) -> dict | None:
    """`age_gender_race_datetime.jpg.chip.jpg` (or `.jpg`) -> {"age", "gender", "race"}; None if malformed."""
    base = Path(name).name
    suffix = next((s for s in UTK_SUFFIXES if base.endswith(s)), None)
    if suffix is None:
        return None
    match = UTK_NAME.fullmatch(base[: -len(suffix)])
    if match is None:
        return None
    age, gender, race = (int(f) for f in match.groups())
    if not (0 <= age <= 120 and gender in (0, 1) and 0 <= race < len(RACES)):
        return None
    return {"age": age, "gender": gender, "race": race}


def scan_utkface(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every file under `folder` (sorted) -> (labelled rows, skipped rows with a reason)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PipelineError(f"data: UTKFace folder {folder} does not exist; check the extracted archive layout")
    rows, skipped = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        label = parse_utk_name(path.name)
        if label is None:
            skipped.append({"file": rel, "reason": UTK_BAD_NAME})
        else:
            rows.append({"file": rel, "age": label["age"], "gender": label["gender"],
                         "race": RACES[label["race"]], "source": "utkface"})
    return pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(skipped, columns=SKIP_COLUMNS)


def _read_rgb(path: Path, size: int) -> np.ndarray | None:
    """(size, size, 3) uint8, or None if the file is not a readable image."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale >= size, much faster
            img = img.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
            return np.array(img, dtype=np.uint8)  # a writable copy
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None  # unknown format, truncated or corrupt data


def load_images(root: Path, files: list[str], size: int) -> tuple[torch.Tensor, list[int]]:
    """Read `root/<file>` as uint8 (N, 3, size, size); unreadable files are skipped.

    Returns (images, loaded) where `loaded` are the indices into `files` that made it."""
    images, loaded = [], []
    for i, name in enumerate(files):
        hwc = _read_rgb(Path(root) / name, size)
        if hwc is not None:
            images.append(torch.from_numpy(hwc).permute(2, 0, 1))  # HWC -> CHW, never a reshape
            loaded.append(i)
    if not images:
        return torch.empty((0, 3, size, size), dtype=torch.uint8), loaded
    return torch.stack(images).contiguous(), loaded


def balanced_sample(frame: pd.DataFrame, groups: list[str], cap: int,
                    rng: np.random.Generator) -> pd.DataFrame:
    """Up to `cap` rows per race group in `groups`, drawn without replacement, in group order."""
    if cap < 1:
        raise PipelineError(f"data: the per-group cap must be at least 1, got {cap}; fix it in params.yaml")
    counts = frame["race"].value_counts()
    parts = []
    for group in groups:
        rows = frame[frame["race"] == group]
        if rows.empty:
            available = ", ".join(f"{g}={n}" for g, n in counts.items()) or "none"
            raise PipelineError(f"data: no images for race group {group!r} (available: {available}); "
                                "remove it from the groups param or add data for it")
        pick = np.sort(rng.choice(len(rows), size=min(cap, len(rows)), replace=False))
        parts.append(rows.iloc[pick])
    return pd.concat(parts, ignore_index=True)
