"""The Omniglot transfer: characters brought to MNIST's form, the archive checks, and the metrics
contract on hand-built tensors."""
import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from pipeline import transfer
from pipeline.data import omniglot
from pipeline.data.sources import sha256
from pipeline.errors import PipelineError


def character(box=(20, 30, 60, 90)) -> Image.Image:
    """A 105x105 Omniglot-style sheet: a black bar on white, off centre."""
    img = Image.new("L", (105, 105), 255)
    ImageDraw.Draw(img).rectangle(box, fill=0)
    return img


def test_a_character_becomes_white_on_black_centred_in_a_20px_box():
    x = omniglot.to_mnist_form(character())
    assert x.shape == (28, 28) and x.dtype == np.float32
    rows, cols = np.nonzero(x > 0.1)
    assert x.max() > 0.9 and x[0, 0] == 0                      # white strokes, black background
    assert rows.max() - rows.min() + 1 <= 21 and rows.max() - rows.min() + 1 >= 19   # longer side ~20 px
    assert abs((rows.min() + rows.max()) / 2 - 13.5) <= 1 and abs((cols.min() + cols.max()) / 2 - 13.5) <= 1
    assert omniglot.to_mnist_form(Image.new("L", (105, 105), 255)).max() == 0   # blank sheet


def zip_of(path, n=6):
    with zipfile.ZipFile(path, "w") as z:
        for i in range(n):
            buf = io.BytesIO()
            character((10 + i, 20, 50 + i, 80)).convert("1").save(buf, "PNG")
            z.writestr(f"images_background_small1/Alpha/character{i:02d}/0{i}_01.png", buf.getvalue())
    return path


def test_load_reads_every_character_or_an_even_subset_and_checks_the_archive(tmp_path):
    (tmp_path / "omniglot").mkdir()
    z = zip_of(tmp_path / "omniglot" / "a.zip")
    files, why = omniglot.find(str(tmp_path), ("a.zip",))
    assert files == [z] and why is None
    x = omniglot.load(files, (sha256(z),))
    assert x.shape == (6, 1, 28, 28) and 0.9 < float(x.max()) <= 1.0
    assert omniglot.load(files, ("",), limit=3).shape[0] == 3
    with pytest.raises(PipelineError, match="sha256"):
        omniglot.load(files, ("0" * 64,))
    bad = tmp_path / "omniglot" / "bad.zip"
    bad.write_bytes(z.read_bytes()[:200])                     # truncated
    with pytest.raises(PipelineError, match="not a readable zip"):
        omniglot.load([bad], ("",))
    assert omniglot.find(str(tmp_path), ("missing.zip",))[0] == [] and omniglot.find(None, ("a.zip",))[0] == []


def test_transfer_metrics_on_hand_built_tensors():
    clean = torch.zeros(4, 1, 4, 4)
    x = torch.ones(4, 1, 4, 4)                                # MSE in: 1 everywhere
    out = torch.cat([torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.5)])   # MSE out: 0, 0, 0.25, 0.25
    mech = torch.tensor([0, 0, 1, 1])
    owner = torch.tensor([2, 2, 0, 1])
    r = transfer.evaluate(("up", "invert"), clean, x, mech, owner, out, 3, {"up": 2, "invert": 1})
    up, inv = r["per_mechanism"]["up"], r["per_mechanism"]["invert"]
    assert up == {"dominant_expert": 2, "mnist_owner": 2, "agrees": True, "purity": 1.0, "mse_inputs": 1.0,
                  "mse_outputs": 0.0, "mse_ratio": 0.0}
    assert inv["dominant_expert"] == 0 and inv["agrees"] is False and inv["purity"] == 0.5
    assert inv["mse_outputs"] == pytest.approx(0.25) and inv["mse_ratio"] == pytest.approx(0.25)
    assert r["owner_agreement"] == 1 and r["n_characters"] == 4 and r["mse_outputs"] == pytest.approx(0.125)


def test_transform_is_balanced_and_seeded():
    x = torch.rand(9, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    a, ids = transfer.transform(x, ("up", "invert", "noise"), 2, 0.5, seed=3)
    b, ids_b = transfer.transform(x, ("up", "invert", "noise"), 2, 0.5, seed=3)
    assert torch.equal(a, b) and torch.equal(ids, ids_b) and torch.bincount(ids).tolist() == [3, 3, 3]
    assert torch.allclose(a[ids == 1], 1 - x[ids == 1])
