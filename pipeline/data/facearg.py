"""FaceARG importer: a user-supplied folder or archive, labelled by race folders or by a CSV."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from pipeline.data.faces import COLUMNS, RACES, SKIP_COLUMNS
from pipeline.data.sources import safe_extract
from pipeline.errors import PipelineError

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
ARCHIVE_EXTS = (".tar", ".tar.gz", ".tgz", ".zip")
LAYOUTS = ("folders", "csv")


def locate_facearg(path: str | None, mirror: str | None, name: str) -> Path | None:
    """The explicit `path` (must exist), else `<mirror>/<name>` if present, else None (= absent)."""
    if path:
        if not Path(path).exists():
            raise PipelineError(f"data: FaceARG path {path} does not exist; fix the FaceARG path param "
                                "or clear it to look in the mirror (or skip FaceARG)")
        return Path(path)
    candidate = Path(mirror) / name if mirror else None
    return candidate if candidate is not None and candidate.exists() else None


def facearg_root(found: Path, dest: Path, mapping: dict) -> Path:
    """Copy a folder, or check and extract an archive, into `dest` (inside the stage output, so DVC
    tracks the images). If everything sits in one wrapping folder that is not itself a race folder
    of `mapping`, that folder is the root."""
    if found.is_dir():
        shutil.copytree(found, dest)
    elif found.name.lower().endswith(ARCHIVE_EXTS):
        safe_extract(found, dest)
    else:
        raise PipelineError(f"data: FaceARG source {found} is neither a folder nor one of {ARCHIVE_EXTS}; "
                            "point the FaceARG path param at the folder or archive")
    top = list(dest.iterdir())
    return top[0] if len(top) == 1 and top[0].is_dir() and top[0].name not in mapping else dest


def _check_mapping(mapping: dict) -> dict[str, str]:
    for key, race in mapping.items():
        if race not in RACES:
            raise PipelineError(f"data: FaceARG mapping entry {key!r}: {race!r} is not a race group; "
                                f"use one of {', '.join(RACES)}")
    return {str(k): v for k, v in mapping.items()}


def _row(file: str, race: str, age: int = -1, gender: int = -1) -> dict:
    return {"file": file, "age": age, "gender": gender, "race": race, "source": "facearg"}


def _scan_folders(root: Path, mapping: dict[str, str]) -> tuple[list, list]:
    rows, skipped = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        top = rel.parts[0] if len(rel.parts) > 1 else None
        if top is None:
            skipped.append({"file": rel.as_posix(), "reason": "not inside a race folder"})
        elif top not in mapping:
            skipped.append({"file": rel.as_posix(), "reason": f"folder {top!r} is not in the race mapping"})
        elif path.suffix.lower() not in IMAGE_EXTS:
            skipped.append({"file": rel.as_posix(), "reason": f"not an image ({', '.join(IMAGE_EXTS)})"})
        else:
            rows.append(_row(rel.as_posix(), mapping[top]))
    return rows, skipped


def _int_or_unknown(value: str) -> int:
    try:
        return int(float(value))
    except (ValueError, OverflowError):  # empty, "nan", "inf", text
        return -1


def _scan_csv(root: Path, mapping: dict[str, str], csv_file: str, columns: dict) -> tuple[list, list]:
    path = root / csv_file
    if not path.is_file():
        raise PipelineError(f"data: FaceARG annotation file {path} does not exist; fix the csv param")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    wanted = {k: columns.get(k) for k in ("file", "race", "age", "gender")}
    for key, col in wanted.items():
        if (key in ("file", "race") or col is not None) and col not in table.columns:
            raise PipelineError(f"data: FaceARG column {col!r} (for {key}) is not in {path}; "
                                f"it has {', '.join(table.columns)}")
    rows, skipped = [], []
    for rec in table.to_dict("records"):
        file, value = rec[wanted["file"]].strip(), rec[wanted["race"]].strip()
        if value not in mapping:
            skipped.append({"file": file, "reason": f"race value {value!r} is not in the race mapping"})
        elif not (root / file).is_file():
            skipped.append({"file": file, "reason": "listed in the CSV but the file is missing"})
        else:
            age, gender = (_int_or_unknown(rec[wanted[k]]) if wanted[k] else -1 for k in ("age", "gender"))
            rows.append(_row(file, mapping[value], age, gender))
    return rows, skipped


def scan_facearg(root: Path, layout: str, mapping: dict, csv_file: str | None,
                 columns: dict | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(labelled rows like faces.scan_utkface with source="facearg", skipped rows with a reason).

    layout "folders": `mapping` is {subfolder: race}; layout "csv": {csv race value: race}, and
    `columns` names the "file" and "race" columns (optional "age", "gender")."""
    mapping = _check_mapping(mapping)
    if not Path(root).is_dir():
        raise PipelineError(f"data: FaceARG folder {root} does not exist; check the FaceARG path param")
    if layout == "folders":
        rows, skipped = _scan_folders(Path(root), mapping)
    elif layout == "csv":
        if not csv_file or not columns:
            raise PipelineError("data: FaceARG layout 'csv' needs the csv file and its columns in params")
        rows, skipped = _scan_csv(Path(root), mapping, csv_file, columns)
    else:
        raise PipelineError(f"data: unknown FaceARG layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    return pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(skipped, columns=SKIP_COLUMNS)
