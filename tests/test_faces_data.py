"""Face data: archive sources and safe extraction, UTKFace names, image loading, FaceARG import."""
from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pipeline.data import facearg, faces, sources
from tests.conftest import mirror_file
from pipeline.errors import PipelineError

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
GOOD = [f"{20 + i}_{i % 2}_{i % 5}_2017010112000{i:04d}.jpg.chip.jpg" for i in range(8)]
GOOD += ["24_0_1_20170116220224657 .jpg.chip.jpg", "7_1_3_20170101000000001.jpg"]  # real oddities
MALFORMED = ["39_1_20170116174525125.jpg.chip.jpg", "130_0_1_20170101000000000.jpg.chip.jpg"]
CORRUPT = "30_1_2_20170101999999999.jpg.chip.jpg"


def solid(path: Path, color, size=16, fmt="JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path, fmt)
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


@pytest.fixture
def utk_archive(tmp_path) -> Path:
    """UTKFace layout: good names, 2 malformed names, 1 file of random bytes with a good name."""
    src = tmp_path / "src" / "UTKFace"
    for i, name in enumerate(GOOD):
        solid(src / name, COLORS[i % len(COLORS)])
    for name in MALFORMED:
        solid(src / name, (0, 0, 0))
    (src / CORRUPT).write_bytes(b"\xff\xd8\xff\xe0" + np.random.default_rng(0).bytes(500))
    archive = tmp_path / "UTKFace.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="UTKFace")
    return archive


def tar_with(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            data = b"x" * 10 if m.isfile() else b""
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    return path


# ---- UTKFace names, scan and load --------------------------------------------------------------

@pytest.mark.parametrize("name, want", [
    ("25_1_3_20170104222047286.jpg.chip.jpg", {"age": 25, "gender": 1, "race": 3}),
    ("UTKFace/0_0_0_20170110215927291.jpg.chip.jpg", {"age": 0, "gender": 0, "race": 0}),
    ("24_0_1_20170116220224657 .jpg.chip.jpg", {"age": 24, "gender": 0, "race": 1}),
    ("116_1_4_20170101.jpg", {"age": 116, "gender": 1, "race": 4}),
    ("39_1_20170116174525125.jpg.chip.jpg", None),   # race missing (real defect)
    ("121_0_0_20170101.jpg.chip.jpg", None), ("20_2_0_20170101.jpg.chip.jpg", None),
    ("20_0_5_20170101.jpg.chip.jpg", None), ("a_0_0_20170101.jpg.chip.jpg", None),
    ("20_0_0_20170101.png", None), ("._20_0_0_20170101.jpg.chip.jpg", None),
])
def test_parse_utk_name(name, want):
    assert faces.parse_utk_name(name) == want


def test_utkface_archive_scan_skips_bad_names_and_load_skips_corrupt_images(utk_archive, tmp_path):
    dest = tmp_path / "out" / "utk"
    names = sources.safe_extract(utk_archive, dest)
    assert sorted(names) == sorted(f"UTKFace/{n}" for n in GOOD + MALFORMED + [CORRUPT])
    frame, skipped = faces.scan_utkface(dest / "UTKFace")
    assert list(frame.columns) == ["file", "age", "gender", "race", "source"]
    assert sorted(frame["file"]) == sorted(GOOD + [CORRUPT]) and frame["file"].is_monotonic_increasing
    assert sorted(skipped["file"]) == sorted(MALFORMED)
    assert skipped["reason"].str.contains("malformed").all()
    row = frame[frame["file"] == GOOD[3]].iloc[0]
    assert (row.age, row.gender, row.race, row.source) == (23, 1, "indian", "utkface")

    images, loaded = faces.load_images(dest / "UTKFace", frame["file"].tolist(), 8)
    bad = frame.index[frame["file"] == CORRUPT][0]
    assert loaded == [i for i in range(len(frame)) if i != bad]
    assert images.shape == (len(GOOD), 3, 8, 8) and images.dtype == torch.uint8
    for img, i in zip(images, loaded):   # every image is its own file, in order
        color = COLORS[GOOD.index(frame["file"][i]) % len(COLORS)]
        assert torch.allclose(img.float().mean((1, 2)), torch.tensor(color, dtype=torch.float), atol=12)


def test_truncated_jpeg_is_skipped(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    solid(tmp_path / "ok.jpg", (0, 0, 255))
    images, loaded = faces.load_images(tmp_path, ["cut.jpg", "ok.jpg", "missing.jpg", "full.jpg"], 32)
    assert loaded == [1, 3] and images.shape == (2, 3, 32, 32)
    empty, none = faces.load_images(tmp_path, ["cut.jpg"], 32)
    assert none == [] and empty.shape == (0, 3, 32, 32) and empty.dtype == torch.uint8


def test_channel_order_and_orientation(tmp_path):
    solid(tmp_path / "red.png", (255, 0, 0), fmt="PNG")
    half = np.zeros((16, 16, 3), dtype=np.uint8)
    half[:, :8, 0] = 255   # left half red
    half[:, 8:, 2] = 255   # right half blue
    Image.fromarray(half).save(tmp_path / "half.png")
    x, loaded = faces.load_images(tmp_path, ["red.png", "half.png"], 8)
    assert loaded == [0, 1]
    assert x[0, 0].min() == 255 and x[0, 1].max() == 0 and x[0, 2].max() == 0
    assert x[1, 0, :, :3].min() > 240 and x[1, 0, :, 5:].max() < 15
    assert x[1, 2, :, 5:].min() > 240 and x[1, 2, :, :3].max() < 15 and x[1, 1].max() < 15


def test_balanced_sample_caps_each_group_deterministically():
    frame = pd.DataFrame({"file": [f"{i}.jpg" for i in range(9)],
                          "race": ["white"] * 6 + ["black"] * 2 + ["asian"]})
    a = faces.balanced_sample(frame, ["white", "black"], 3, np.random.default_rng(5))
    b = faces.balanced_sample(frame, ["white", "black"], 3, np.random.default_rng(5))
    assert a.equals(b) and a["file"].is_unique
    assert a["race"].tolist() == ["white"] * 3 + ["black"] * 2
    with pytest.raises(PipelineError, match=r"'indian'.*white=6, black=2, asian=1"):
        faces.balanced_sample(frame, ["white", "indian"], 3, np.random.default_rng(5))


# ---- obtaining archives --------------------------------------------------------------------------

def test_mirror_checksum_mismatch_names_both_hashes(utk_archive, tmp_path):
    mirror, downloads = utk_archive.parent, tmp_path / "downloads"
    good = hashlib.sha256(utk_archive.read_bytes()).hexdigest()
    assert sources.sha256(utk_archive) == good
    found = sources.locate_archive("UTKFace.tar.gz", str(mirror), [], downloads, good)
    assert found == utk_archive and not downloads.exists()
    assert sources.locate_archive("UTKFace.tar.gz", str(mirror), [], downloads, None) == utk_archive
    with pytest.raises(PipelineError) as e:
        sources.locate_archive("UTKFace.tar.gz", str(mirror), [], downloads, "ab" * 32)
    assert good in str(e.value) and "ab" * 32 in str(e.value) and "sha256 param" in str(e.value)


def test_download_is_atomic_and_checked(utk_archive, tmp_path):
    downloads, url = tmp_path / "downloads", utk_archive.as_uri()
    good = sources.sha256(utk_archive)
    with pytest.raises(PipelineError, match=f"{good}.*{'cd' * 32}"):
        sources.locate_archive("UTKFace.tar.gz", None, [url], downloads, "cd" * 32)
    assert leftovers(downloads) == []   # the wrong download is not kept, nor any temp file
    got = sources.locate_archive("UTKFace.tar.gz", str(tmp_path / "nowhere"), ["file:///nonexistent.tgz", url],
                                 downloads, good)
    assert got == downloads / "UTKFace.tar.gz" and got.read_bytes() == utk_archive.read_bytes()
    assert leftovers(downloads) == ["UTKFace.tar.gz"]


def test_no_mirror_and_no_reachable_url_is_one_clear_error(tmp_path):
    mirror, downloads = tmp_path / "no-mirror", tmp_path / "downloads"
    urls = ["file:///nonexistent/UTKFace.tar.gz", "http://127.0.0.1:9/UTKFace.tar.gz", "not a url"]
    with pytest.raises(PipelineError) as e:
        sources.locate_archive("UTKFace.tar.gz", str(mirror), urls, downloads, None, timeout=0.5)
    msg = str(e.value)
    assert "\n" not in msg and "UTKFace.tar.gz" in msg and str(mirror) in msg and "ICM_DATA_MIRROR" in msg
    assert all(u in msg for u in urls) and "folder missing" in msg
    assert leftovers(downloads) == []
    with pytest.raises(PipelineError, match="no mirror set.*no download URLs"):
        sources.locate_archive("UTKFace.tar.gz", None, [], downloads, None)


# ---- safe extraction -----------------------------------------------------------------------------

def _unsafe_members(tmp_path) -> dict[str, tarfile.TarInfo]:
    link = tarfile.TarInfo("UTKFace/link.jpg")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    hard = tarfile.TarInfo("UTKFace/hard.jpg")
    hard.type, hard.linkname = tarfile.LNKTYPE, "UTKFace/1_0_0_1.jpg"
    fifo = tarfile.TarInfo("UTKFace/pipe")
    fifo.type = tarfile.FIFOTYPE
    names = ["../evil.jpg", str(tmp_path / "abs_evil.jpg"), "UTKFace/a/../../../evil.jpg"]
    return {**{n: tarfile.TarInfo(n) for n in names}, link.name: link, hard.name: hard, fifo.name: fifo}


@pytest.mark.parametrize("which", range(6))
def test_unsafe_tar_member_is_refused_before_anything_is_written(tmp_path, which):
    name, bad = list(_unsafe_members(tmp_path).items())[which]
    archive = tar_with(tmp_path / "bad.tar.gz", [tarfile.TarInfo("UTKFace/1_0_0_1.jpg"), bad])
    dest = tmp_path / "out" / "data"
    with pytest.raises(PipelineError, match=re.escape(repr(name))):
        sources.safe_extract(archive, dest)
    assert leftovers(tmp_path / "out") == []
    assert not (tmp_path / "evil.jpg").exists() and not (tmp_path / "abs_evil.jpg").exists()


@pytest.mark.parametrize("name", ["../evil.jpg", "/abs/evil.jpg"])
def test_unsafe_zip_member_is_refused(tmp_path, name):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ok/1.jpg", b"x")
        z.writestr(zipfile.ZipInfo(name), b"x")
    with pytest.raises(PipelineError, match=re.escape(repr(name))):
        sources.safe_extract(archive, tmp_path / "out" / "data")
    assert leftovers(tmp_path / "out") == [] and not (tmp_path / "evil.jpg").exists()


def test_truncated_or_bogus_archive_is_reported_and_leaves_nothing(utk_archive, tmp_path):
    data = utk_archive.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_bytes(np.random.default_rng(1).bytes(2000))
    for archive in (cut, bogus):
        with pytest.raises(PipelineError, match=f"{archive.name} is corrupt or truncated.*re-download") as e:
            sources.safe_extract(archive, tmp_path / "out" / "data")
        assert "\n" not in str(e.value)
        assert leftovers(tmp_path / "out") == []


def test_damage_found_mid_extraction_removes_the_partial_folder(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        z.writestr("first.jpg", b"fine")
        z.writestr("second.jpg", b"A" * 1000)
    data = bytearray(archive.read_bytes())
    data[data.find(b"A" * 1000) + 500] = ord("B")   # CRC mismatch, seen only when reading
    archive.write_bytes(bytes(data))
    with pytest.raises(PipelineError, match="corrupt or truncated"):
        sources.safe_extract(archive, tmp_path / "out" / "data")
    assert leftovers(tmp_path / "out") == []


# ---- FaceARG -------------------------------------------------------------------------------------

FOLDER_MAP = {"Caucasian": "white", "African": "black"}


def facearg_folders(root: Path) -> Path:
    solid(root / "Caucasian" / "a.jpg", (255, 0, 0))
    solid(root / "Caucasian" / "sub" / "b.png", (0, 255, 0), fmt="PNG")
    solid(root / "African" / "c.jpeg", (0, 0, 255))
    solid(root / "Unknown" / "d.jpg", (0, 0, 0))
    (root / "Caucasian" / "notes.txt").write_text("x")
    (root / "readme.txt").write_text("x")
    return root


def check_folders_scan(root: Path):
    frame, skipped = facearg.scan_facearg(root, "folders", FOLDER_MAP, None, None)
    assert frame["file"].tolist() == ["African/c.jpeg", "Caucasian/a.jpg", "Caucasian/sub/b.png"]
    assert frame["race"].tolist() == ["black", "white", "white"]
    assert (frame["source"] == "facearg").all() and (frame["age"] == -1).all()
    reasons = dict(zip(skipped["file"], skipped["reason"]))
    assert set(reasons) == {"Unknown/d.jpg", "Caucasian/notes.txt", "readme.txt"}
    assert "'Unknown'" in reasons["Unknown/d.jpg"] and "mapping" in reasons["Unknown/d.jpg"]
    images, loaded = faces.load_images(root, frame["file"].tolist(), 8)
    assert loaded == [0, 1, 2] and images[0, 2].float().mean() > 200 and images[2, 1].float().mean() > 200


def test_facearg_folders_layout(tmp_path):
    check_folders_scan(facearg_folders(tmp_path / "FaceARG"))
    with pytest.raises(PipelineError, match="'African': 'afro'"):
        facearg.scan_facearg(tmp_path / "FaceARG", "folders", {"African": "afro"}, None, None)
    with pytest.raises(PipelineError, match="unknown FaceARG layout 'json'"):
        facearg.scan_facearg(tmp_path / "FaceARG", "json", FOLDER_MAP, None, None)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_facearg_archive_in_mirror_is_found_and_extracted(tmp_path, kind):
    src = facearg_folders(tmp_path / "src" / "FaceARG")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    archive = mirror / f"FaceARG.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as z:
            for p in sorted(src.rglob("*")):
                z.write(p, p.relative_to(src.parent).as_posix())
    else:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(src, arcname="FaceARG")
    found = facearg.locate_facearg(None, str(mirror), archive.name)
    assert found == archive
    root = facearg.facearg_root(found, tmp_path / "work" / "facearg", {"white": "white"})
    assert root == tmp_path / "work" / "facearg" / "FaceARG"
    check_folders_scan(root)


def test_facearg_csv_layout(tmp_path):
    root = tmp_path / "FaceARG"
    for i, color in enumerate(COLORS[:3]):
        solid(root / "imgs" / f"{i}.jpg", color)
    (root / "labels.csv").write_text("path,label,age\nimgs/0.jpg,1,30\nimgs/1.jpg, 2 ,\n"
                                     "imgs/2.jpg,9,40\nimgs/missing.jpg,1,20\n")
    mapping = {1: "asian", "2": "black"}   # YAML may give int keys
    columns = {"file": "path", "race": "label", "age": "age", "gender": None}
    frame, skipped = facearg.scan_facearg(root, "csv", mapping, "labels.csv", columns)
    assert frame["file"].tolist() == ["imgs/0.jpg", "imgs/1.jpg"]
    assert frame["race"].tolist() == ["asian", "black"]
    assert frame["age"].tolist() == [30, -1] and frame["gender"].tolist() == [-1, -1]
    reasons = dict(zip(skipped["file"], skipped["reason"]))
    assert "'9'" in reasons["imgs/2.jpg"] and "missing" in reasons["imgs/missing.jpg"]
    with pytest.raises(PipelineError, match="'race'.*path, label, age"):
        facearg.scan_facearg(root, "csv", mapping, "labels.csv", {"file": "path", "race": "race"})
    with pytest.raises(PipelineError, match="nope.csv does not exist"):
        facearg.scan_facearg(root, "csv", mapping, "nope.csv", columns)


def test_locate_facearg(tmp_path):
    assert facearg.locate_facearg(None, None, "FaceARG") is None
    assert facearg.locate_facearg(None, str(tmp_path), "FaceARG") is None   # absent: caller skips
    (tmp_path / "FaceARG").mkdir()
    assert facearg.locate_facearg(None, str(tmp_path), "FaceARG") == tmp_path / "FaceARG"
    assert facearg.locate_facearg(str(tmp_path / "FaceARG"), None, "x") == tmp_path / "FaceARG"
    with pytest.raises(PipelineError, match="FaceARG path .*FaceARGG does not exist"):
        facearg.locate_facearg(str(tmp_path / "FaceARGG"), str(tmp_path), "FaceARG")


# ---- the real archive, when the offline mirror is available -------------------------------------

def test_real_utkface_first_members(tmp_path):
    archive = mirror_file("UTKFace.tar.gz")
    files = []
    with tarfile.open(archive, "r|gz") as tar:   # stream: stop after 40 files, no full extraction
        for m in tar:
            if m.isfile():
                (tmp_path / Path(m.name).name).write_bytes(tar.extractfile(m).read())
                files.append(Path(m.name).name)
                if len(files) == 40:
                    break
    labels = [faces.parse_utk_name(f) for f in files]
    assert len(files) == 40 and all(lab is not None for lab in labels), files
    assert all(lab["age"] >= 1 for lab in labels)
    images, loaded = faces.load_images(tmp_path, files, 32)
    assert loaded == list(range(40)) and images.shape == (40, 3, 32, 32) and images.dtype == torch.uint8
    assert images.float().std() > 20   # real photos, not blank
