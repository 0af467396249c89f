"""Omniglot characters (Lake, Salakhutdinov, Tenenbaum 2015) in MNIST's form, for the transfer stage.

The mirror holds the authors' zips: 105x105 binary PNGs, black strokes on white. MNIST digits are
white on black, scaled into a 20x20 box and centred in 28x28. `to_mnist_form` does the same to a
character: invert, thicken the 105 px strokes so they survive the downscale (about MNIST's stroke
width), crop to the strokes, fit the longer side to 20 px and centre in the frame.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

from pipeline.data.sources import READ_ERRORS, _check_sha256
from pipeline.errors import PipelineError

BOX, FRAME = 20, 28          # MNIST: digits fit a 20x20 box, centred in 28x28
THICKEN = 5                  # max filter (px at 105 px): ~3 px strokes become ~2 px at 28 px


def to_mnist_form(img: Image.Image, size: int = FRAME) -> np.ndarray:
    """One character -> float32 (size, size) in [0, 1], white strokes on black, centred."""
    ink = ImageOps.invert(img.convert("L")).filter(ImageFilter.MaxFilter(THICKEN))
    box = ink.getbbox()
    if box is None:                                   # a blank sheet: nothing to centre
        return np.zeros((size, size), dtype=np.float32)
    ink = ink.crop(box)
    scale = BOX * size / FRAME / max(ink.size)
    ink = ink.resize((max(1, round(ink.width * scale)), max(1, round(ink.height * scale))), Image.LANCZOS)
    out = Image.new("L", (size, size))
    out.paste(ink, ((size - ink.width) // 2, (size - ink.height) // 2))
    return np.asarray(out, dtype=np.float32) / 255.0


def find(mirror: str | None, archives: tuple[str, ...]) -> tuple[list[Path], str | None]:
    """The archives under `<mirror>/omniglot/`, or ([], why not)."""
    if not mirror:
        return [], "no data mirror set (env ICM_DATA_MIRROR or the transfer.mirror param)"
    paths = [Path(mirror) / "omniglot" / a for a in archives]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        return [], f"Omniglot archive(s) not found: {', '.join(missing)}"
    return paths, None


def load(paths: list[Path], sha256s: tuple[str, ...], limit: int = 0, size: int = FRAME) -> torch.Tensor:
    """Every character PNG in the zips (sorted by name), or `limit` of them evenly spaced (0 = all),
    as float (N, 1, size, size). A checksum mismatch or an unreadable archive/image is one PipelineError."""
    for path, expected in zip(paths, sha256s):
        _check_sha256(path, expected, str(path))
    pngs = []                      # (archive, member, bytes): each archive is opened once
    for path in paths:
        try:
            with zipfile.ZipFile(path) as z:
                pngs += [(path, n, z.read(n)) for n in sorted(z.namelist()) if n.lower().endswith(".png")]
        except READ_ERRORS as e:
            raise PipelineError(f"data: {path} is not a readable zip ({type(e).__name__}: {e}); "
                                "replace it with the original archive") from e
    if not pngs:
        raise PipelineError(f"data: no PNG characters in {', '.join(map(str, paths))}")
    if limit and limit < len(pngs):
        pngs = [pngs[i] for i in np.linspace(0, len(pngs) - 1, limit).round().astype(int)]
    out = np.empty((len(pngs), 1, size, size), dtype=np.float32)
    for i, (path, name, data) in enumerate(pngs):
        try:
            with Image.open(io.BytesIO(data)) as img:
                out[i, 0] = to_mnist_form(img, size)
        except (OSError, SyntaxError, ValueError) as e:
            raise PipelineError(f"data: {path}:{name} is not a readable image ({type(e).__name__}); "
                                "replace the archive with the original") from e
    return torch.from_numpy(out)
