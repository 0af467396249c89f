"""Obtaining dataset archives: offline mirror or download, checksum, and safe extraction."""
from __future__ import annotations

import hashlib
import http.client
import shutil
import tarfile
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from pipeline.errors import PipelineError
from pipeline.io import atomic_path

CHUNK = 1 << 20
DOWNLOAD_TIMEOUT = 30.0  # seconds per URL; a dead host should fail fast, not hang the stage
READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _one_line(e: Exception) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


def _check_sha256(path: Path, expected: str | None, label: str) -> None:
    if not expected:
        return
    got = sha256(path)
    if got != expected.strip().lower():
        raise PipelineError(
            f"data: {label} has sha256 {got} but {expected} was expected; get the right archive "
            "(or, if this one is right, set the sha256 param to its hash, or clear it to skip the check)")


def _download(url: str, target: Path, expected_sha256: str | None, timeout: float) -> None:
    """Fetch `url` into `target` via a temp sibling; nothing is left behind on any failure."""
    with atomic_path(target) as tmp:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, CHUNK)
        _check_sha256(tmp, expected_sha256, f"{target.name} from {url}")


def locate_archive(filename: str, mirror: str | None, urls: list[str], download_dir: Path,
                   expected_sha256: str | None, timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """`<mirror>/<filename>` if it exists, else the first URL that downloads into `download_dir`."""
    found = Path(mirror) / filename if mirror else None
    if found is not None and found.is_file():
        _check_sha256(found, expected_sha256, str(found))
        return found
    target, failures = Path(download_dir) / filename, []
    for url in urls:
        try:
            _download(url, target, expected_sha256, timeout)
            return target
        except (OSError, ValueError, http.client.HTTPException) as e:  # URLError is an OSError
            failures.append(f"{url} ({_one_line(e)})")
    where = (f"not in mirror {mirror}" + ("" if Path(mirror).is_dir() else " (folder missing)")
             if mirror else "no mirror set")
    tried = "; ".join(failures) if failures else "no download URLs configured"
    raise PipelineError(
        f"data: cannot obtain {filename}: {where} (set env ICM_DATA_MIRROR or the params mirror "
        f"entry to a folder holding it), and downloads failed: {tried}")


def _check_member(archive: Path, name: str, kind: str | None) -> None:
    """Reject anything that could write outside the destination or is not a plain file/folder."""
    if name.startswith("/"):
        raise PipelineError(f"data: archive {archive} has an absolute member path {name!r}; refusing to extract it")
    if ".." in PurePosixPath(name).parts:
        raise PipelineError(f"data: archive {archive} has a member escaping its folder {name!r}; refusing to extract it")
    if kind is not None:
        raise PipelineError(f"data: archive {archive} has a {kind} member {name!r}; only plain files "
                            "and folders are allowed; refusing to extract it")


def _check_clashes(archive: Path, members: list) -> None:
    """Two members landing on one path would silently overwrite each other (a repeated name) or fail
    half-way with an OS error (a file where a folder of that name is needed); refuse both up front.
    Repeated folders are fine. Each path maps to (is a folder, index and name of the member that put
    it there); the destination itself is a folder."""
    seen = {(): (True, -1, ".")}
    for index, (name, is_dir, _, _) in enumerate(members):
        parts = PurePosixPath(name).parts
        for depth in range(len(parts) + 1):
            folder = depth < len(parts) or is_dir
            was_folder, first, first_name = seen.setdefault(parts[:depth], (folder, index, name))
            if first != index and not (was_folder and folder):
                raise PipelineError(
                    f"data: archive {archive} has member {name!r} clashing with member {first_name!r} "
                    "(the same name twice, or a file and a folder of one name); refusing to extract it; "
                    "re-download the archive or repack it with each path once")


def _tar_kind(m: tarfile.TarInfo) -> str | None:
    if m.isfile() or m.isdir():
        return None
    return ("symlink" if m.issym() else "hardlink" if m.islnk() else "device" if m.isdev()
            else "fifo" if m.isfifo() else "special")


def _zip_kind(m: zipfile.ZipInfo) -> str | None:
    mode = (m.external_attr >> 16) & 0o170000  # unix mode bits; 0 when made on Windows
    return None if mode in (0, 0o100000, 0o040000) else "symlink" if mode == 0o120000 else "special"


def _corrupt(archive: Path, e: Exception) -> PipelineError:
    return PipelineError(f"data: archive {archive} is corrupt or truncated ({_one_line(e)}); re-download it")


def _copy(archive: Path, src, target: Path) -> None:
    """Stream one member out; read errors mean a damaged archive, write errors are the disk's."""
    with open(target, "wb") as out:
        while True:
            try:
                chunk = src.read(CHUNK)
            except READ_ERRORS as e:
                raise _corrupt(archive, e) from e
            if not chunk:
                return
            out.write(chunk)


def safe_extract(archive: Path, dest: Path) -> list[str]:
    """Check every member of a tar (plain or gz) or .zip archive, then extract its files and folders
    into `dest` atomically. Returns the extracted file names, relative to `dest`.

    Not tarfile's `filter="data"`: it strips an absolute name's slash and extracts the member, it
    allows links that stay inside `dest`, it acts member by member (a bad member is found after
    others were written), and zip files have no filter. Our checks refuse all of these up front,
    naming the member, and the loop below writes plain files and folders only, with default modes."""
    archive = Path(archive)
    if not archive.is_file():
        raise PipelineError(f"data: archive {archive} does not exist; check the path")
    is_zip = archive.name.lower().endswith(".zip")
    try:
        arc = zipfile.ZipFile(archive) if is_zip else tarfile.open(archive, "r:*")
    except READ_ERRORS as e:
        raise _corrupt(archive, e) from e
    with arc:
        try:  # getmembers() reads through the whole tar, so truncation shows up here
            members = ([(m.filename, m.is_dir(), _zip_kind(m), m) for m in arc.infolist()] if is_zip
                       else [(m.name, m.isdir(), _tar_kind(m), m) for m in arc.getmembers()])
        except READ_ERRORS as e:
            raise _corrupt(archive, e) from e
        for name, _, kind, _ in members:
            _check_member(archive, name, kind)
        _check_clashes(archive, members)
        names = []
        with atomic_path(dest, is_dir=True) as tmp:
            for name, is_dir, _, m in members:
                rel = PurePosixPath(name)
                target = tmp.joinpath(*rel.parts)
                if is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    src = arc.open(m) if is_zip else arc.extractfile(m)
                except READ_ERRORS as e:
                    raise _corrupt(archive, e) from e
                with src:
                    _copy(archive, src, target)
                names.append(rel.as_posix())
    return names
