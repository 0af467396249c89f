"""Face datasets for the ICM stages: acquire (download stage) and prepare (prepare stage).

raw/ (download output): images/ (the extracted archive), manifest.csv (file, age, gender, race,
source: the usable images), skipped.csv (file, reason: malformed names, unreadable images, unmapped
folders) and status.json ({"available": bool, "message", counts}). FaceARG absent -> available false.

prepared tensors (prepare output), as for MNIST: f"{split}_canonical", f"{split}_transformed" and
f"{split}_transformed_mech" (index into tensors["mechanisms"]), float (N, 3, S, S) in [0, 1]; in
synthetic mode also f"{split}_transformed_clean" (the face before its mechanism); f"{split}_canonical_gender"
and f"{split}_transformed_gender" (UTKFace: 0 male, 1 female; -1 unknown).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from pipeline import mechanisms as mech
from pipeline.config import FacesData, FacesSource
from pipeline.data import facearg, faces
from pipeline.data.sources import locate_archive, safe_extract
from pipeline.data.splits import SPLITS, balanced_assignment, stratified_split
from pipeline.errors import PipelineError


def mechanism_names(d: FacesData) -> list[str]:
    """What a faces dataset's tensors call its mechanisms: the transformed groups (demographic mode)
    or the synthetic mechanisms."""
    return list(d.transformed) if d.mode == "demographic" else list(d.mechanisms)


def _readable(path: Path) -> bool:
    """Decode at 1/8 scale: catches truncated and corrupt JPEGs at a fraction of the full cost."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (img.width // 8 or 1, img.height // 8 or 1))
            img.load()
        return True
    except Exception:  # PIL raises many types (OSError, SyntaxError, ValueError, ...) on bad data
        return False


def acquire(src: FacesSource, mirror: str | None, out: Path, log) -> dict:
    """Find, verify, extract and scan a face archive into `out` (a fresh folder). Returns status."""
    images = out / "images"
    if src.kind == "utkface":
        archive = Path(src.path) if src.path else locate_archive(src.archive, mirror, list(src.urls), out,
                                                                 src.sha256)
        log(f"download: extracting {archive}")
        safe_extract(archive, images)
        if archive.parent == out:
            archive.unlink()
        frame, skipped = faces.scan_utkface(images)
    else:
        found = facearg.locate_facearg(src.path, mirror, src.archive)
        if found is None:
            msg = (f"FaceARG not found (params path is empty and {src.archive} is not in the mirror "
                   f"{mirror or '(none set)'}); its stages are skipped. FaceARG is given out by its authors on "
                   "request: set the facearg data.source.path param to your archive or folder to use it.")
            return {"available": False, "message": msg}
        lay = src.facearg
        root = facearg.facearg_root(found, images, lay.mapping)
        frame, skipped = facearg.scan_facearg(root, lay.layout, lay.mapping, lay.csv, lay.columns)
        frame["file"] = [str((root / f).relative_to(images)) for f in frame["file"]]
    bad = [not _readable(images / f) for f in frame["file"]]
    unreadable = frame[bad]
    skipped = pd.concat([skipped, pd.DataFrame({"file": unreadable["file"], "reason": "unreadable image"})],
                        ignore_index=True)
    frame = frame[~np.array(bad, dtype=bool)].reset_index(drop=True)
    frame.to_csv(out / "manifest.csv", index=False)
    skipped.to_csv(out / "skipped.csv", index=False)
    counts = skipped["reason"].value_counts().to_dict()
    return {"available": True, "message": f"{len(frame)} images, {len(skipped)} skipped",
            "images": len(frame), "skipped": {str(k): int(v) for k, v in counts.items()},
            "per_group": {str(k): int(v) for k, v in frame["race"].value_counts().items()}}


def prepare(raw: Path, d: FacesData, seed: int) -> tuple[dict, pd.DataFrame]:
    """Balanced sample, resize, stratified splits; demographic or synthetic (see module doc)."""
    frame = pd.read_csv(raw / "manifest.csv")
    rng = np.random.default_rng(seed)
    # Synthetic mode draws every listed group too: its mechanisms are synthetic, nothing ties them to one.
    groups = [d.canonical, *d.transformed]
    picked = faces.balanced_sample(frame, groups, d.cap_per_group, rng)
    x, loaded = faces.load_images(raw / "images", picked["file"].tolist(), d.image_size)
    picked = picked.iloc[loaded].reset_index(drop=True)
    x = x.float().div_(255.0)
    parts = stratified_split(picked["race"].to_numpy(), {"test": d.test_fraction, "val": d.val_fraction,
                                                         "train": 0.0}, seed)
    names = mechanism_names(d)
    gender = (pd.to_numeric(picked["gender"], errors="coerce").fillna(-1).astype(np.int64).to_numpy()
              if "gender" in picked else np.full(len(picked), -1, dtype=np.int64))
    tensors, rows = {"mechanisms": names}, []
    for split in SPLITS:
        idx = parts[split]
        if d.mode == "demographic":   # shuffled, so that any prefix (e.g. the check batch) mixes the groups
            race = picked["race"].to_numpy()[idx]
            canon, trans = rng.permutation(idx[race == d.canonical]), rng.permutation(idx[race != d.canonical])
            ids = np.array([names.index(r) for r in picked["race"].to_numpy()[trans]], dtype=np.int64)
            tensors[f"{split}_transformed"] = x[trans]
        else:
            half = rng.permutation(len(idx))
            canon, trans = np.sort(idx[half[: len(idx) // 2]]), np.sort(idx[half[len(idx) // 2:]])
            ids = balanced_assignment(len(trans), len(names), rng)
            tensors[f"{split}_transformed_clean"] = x[trans]
            tensors[f"{split}_transformed"] = mech.apply(tuple(names), x[trans], torch.from_numpy(ids), d.strength)
        tensors[f"{split}_canonical"] = x[canon]
        tensors[f"{split}_transformed_mech"] = torch.from_numpy(ids)
        tensors[f"{split}_canonical_gender"] = torch.from_numpy(gender[canon])        # -1: unknown
        tensors[f"{split}_transformed_gender"] = torch.from_numpy(gender[trans])
        for role, sel, m in (("canonical", canon, None), ("transformed", trans, ids)):
            part = picked.iloc[sel].assign(split=split, role=role,
                                           mechanism="" if m is None else [names[j] for j in m])
            rows.append(part)
    if any(len(tensors[f"{s}_{r}"]) == 0 for s in SPLITS for r in ("canonical", "transformed")):
        raise PipelineError("data: a split ended up empty; raise cap_per_group or the split fractions")
    return tensors, pd.concat(rows, ignore_index=True)
