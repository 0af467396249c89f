"""Face datasets through acquire (download stage) and prepare: fixtures generated here."""
from __future__ import annotations

import dataclasses as dc
import tarfile

import pandas as pd
import pytest
import torch
from PIL import Image

from pipeline import config
from pipeline.data import facesets
from pipeline.errors import PipelineError
from pipeline.paths import Paths
from pipeline.runtime import skip_if_unavailable

# group -> colour: canonical asian is pure red, so channel order is visible after prepare
COLOURS = {2: (255, 0, 0), 0: (0, 255, 0), 1: (0, 0, 255)}


@pytest.fixture
def archive(tmp_path):
    src = tmp_path / "src" / "UTKFace"
    src.mkdir(parents=True)
    for race, colour in COLOURS.items():
        for i in range(30):
            Image.new("RGB", (200, 200), colour).save(src / f"{20 + i}_{i % 2}_{race}_2017{i:010d}.jpg.chip.jpg")
    (src / "39_1_20170116174525125.jpg.chip.jpg").write_bytes(b"malformed name")
    (src / "30_0_2_20990101000000000.jpg.chip.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    path = tmp_path / "mirror" / "UTKFace.tar.gz"
    path.parent.mkdir()
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src, arcname="UTKFace")
    return path


def faces_cfg(cfg, **data):
    d = dc.replace(cfg.faces.data, source=dc.replace(cfg.faces.data.source, sha256=None), cap_per_group=20,
                   test_fraction=0.2, val_fraction=0.2, **data)
    return d


def test_acquire_counts_bad_files_and_prepare_keeps_channel_order(cfg, archive, tmp_path):
    d = faces_cfg(cfg)
    raw = tmp_path / "raw"
    raw.mkdir()
    status = facesets.acquire(d.source, str(archive.parent), raw, lambda m: None)
    assert status["images"] == 90 and status["per_group"] == {"asian": 30, "white": 30, "black": 30}
    assert sorted(status["skipped"].values()) == [1, 1] and "unreadable image" in status["skipped"]
    assert len(pd.read_csv(raw / "skipped.csv")) == 2

    t, manifest = facesets.prepare(raw, d, seed=0)
    assert t["mechanisms"] == ["white", "black"]
    red = t["train_canonical"]                       # asian faces were pure red
    assert red.shape[1:] == (3, 32, 32) and red.dtype == torch.float32
    assert red[:, 0].min() > 0.95 and red[:, 1:].max() < 0.05
    mech = t["train_transformed_mech"]
    assert not (mech[1:] >= mech[:-1]).all()        # groups interleaved: a prefix is a fair check batch
    white_is_green = t["train_transformed"][mech == 0]
    assert white_is_green[:, 1].min() > 0.95 and white_is_green[:, [0, 2]].max() < 0.05
    assert {"file", "age", "gender", "race", "source", "split"} <= set(manifest.columns)
    assert manifest.groupby("race").size().to_dict() == {"asian": 20, "black": 20, "white": 20}
    assert not set(manifest[manifest.split == "test"].file) & set(manifest[manifest.split == "train"].file)
    for split in ("train", "val", "test"):        # gender labels travel with their faces (0 male, 1 female)
        for role in ("canonical", "transformed"):
            g = t[f"{split}_{role}_gender"]
            rows = manifest[(manifest.split == split) & (manifest.role == role)]
            assert len(g) == len(t[f"{split}_{role}"]) == len(rows)
            assert sorted(g.tolist()) == sorted(rows.gender.tolist())


def test_synthetic_mode_applies_known_mechanisms_to_canonical_faces(cfg, archive, tmp_path):
    d = faces_cfg(cfg, mode="synthetic", transformed=(), mechanisms=("hflip", "occlusion"))
    raw = tmp_path / "raw"
    raw.mkdir()
    facesets.acquire(d.source, str(archive.parent), raw, lambda m: None)
    t, manifest = facesets.prepare(raw, d, seed=0)
    assert set(manifest.race) == {"asian"} and t["mechanisms"] == ["hflip", "occlusion"]
    both = facesets.prepare(raw, dc.replace(d, transformed=("white", "black")), seed=0)[1]
    assert set(both.race) == {"asian", "white", "black"}    # the listed groups are all drawn
    occluded = t["train_transformed"][t["train_transformed_mech"] == 1]
    assert occluded[:, :, 10:16].max() == 0 and occluded[:, 0, :8].min() > 0.95   # black band over the eyes


def test_wrong_checksum_fails_before_extracting(cfg, archive, tmp_path):
    src = dc.replace(cfg.faces.data.source, sha256="0" * 64)
    with pytest.raises(PipelineError, match="sha256"):
        facesets.acquire(src, str(archive.parent), tmp_path, lambda m: None)
    assert not (tmp_path / "images").exists()


def test_facearg_absent_is_a_status_and_later_stages_write_placeholders(cfg, tmp_path):
    status = facesets.acquire(cfg.facearg.data.source, str(tmp_path), tmp_path, lambda m: None)
    assert status["available"] is False and "FaceARG" in status["message"] and "path" in status["message"]
    paths = Paths("facearg", tmp_path)
    paths.raw.mkdir(parents=True)
    (paths.raw / "status.json").write_text('{"available": false, "message": "absent"}')
    assert skip_if_unavailable(paths, "evaluate", [paths.metrics, paths.figures, paths.report])
    assert '"skipped": true' in paths.metrics.read_text()
    assert (paths.figures / "SKIPPED.txt").read_text() == "absent\n"
    assert "absent" in paths.report.read_text()


def test_faces_params_are_validated(params):
    from tests.conftest import with_overrides

    for key, value, named in [("faces.data.canonical", "martian", "canonical"),
                              ("faces.data.transformed", ["asian"], "transformed"),
                              ("faces_synthetic.data.mechanisms", ["hflip", "swirl"], "mechanisms"),
                              ("faces.data.source.sha256", "abc", "sha256"),
                              ("faces.data.strength.band", 0.9, "band"),
                              ("facearg.data.source.facearg.mapping", {"x": "green"}, "mapping"),
                              ("faces.experts.arch", "resnet", "arch")]:
        with pytest.raises(PipelineError, match=named):
            config.from_dict(with_overrides(params, {key: value}))


def test_facearg_folder_is_imported_into_the_stage_output(cfg, tmp_path):
    src = tmp_path / "FaceARG"
    for folder, n in (("asian", 3), ("white", 2), ("unmapped", 1)):
        (src / folder).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (40, 40), (255, 0, 0)).save(src / folder / f"{i}.jpg")
    source = dc.replace(cfg.facearg.data.source, path=str(src))
    out = tmp_path / "raw"
    out.mkdir()
    status = facesets.acquire(source, None, out, lambda m: None)
    assert status["available"] and status["per_group"] == {"asian": 3, "white": 2}
    assert status["skipped"] == {"folder 'unmapped' is not in the race mapping": 1}
    manifest = pd.read_csv(out / "manifest.csv")
    assert all((out / "images" / f).is_file() for f in manifest["file"])   # copied, not referenced
