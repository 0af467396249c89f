import numpy as np
import pytest
import torch

from pipeline.data import mnist
from pipeline.data.splits import balanced_assignment, stratified_split
from pipeline.errors import PipelineError

MECHS = ("up", "down", "left", "right", "up_left", "up_right", "down_left", "down_right", "invert", "noise")


@pytest.fixture(scope="module")
def prepared(digits):
    x, y = digits
    return mnist.prepare(x, y, MECHS, 28, 0.2, 0.1, 4, 0.5, seed=0)


def test_embedded_digits_are_real_mnist():
    x, y = mnist.load_embedded()
    assert x.shape == (5000, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [500] * 10
    assert x.max() == 255 and (x == 0).mean() > 0.7     # white strokes on black


def test_splits_are_disjoint_and_cover_everything(prepared, digits):
    _, manifest = prepared
    assert manifest["source_index"].is_unique
    assert len(manifest) == len(digits[1])


def test_splits_are_stratified_by_digit(prepared):
    _, manifest = prepared
    for (split, role), part in manifest.groupby(["split", "role"]):
        counts = part["digit"].value_counts()
        assert counts.max() - counts.min() <= 1, (split, role, counts.to_dict())


def test_transformed_parts_use_every_mechanism_evenly(prepared):
    tensors, manifest = prepared
    tr = manifest[(manifest.role == "transformed") & (manifest.split == "train")]
    counts = tr["mechanism"].value_counts()
    assert set(counts.index) == set(MECHS) and counts.max() - counts.min() <= 1
    assert (manifest[manifest.role == "canonical"]["mechanism"].fillna("") == "").all()


def test_transformed_images_are_their_clean_image_after_the_mechanism(prepared):
    t, _ = prepared
    inv = MECHS.index("invert")
    sel = t["train_transformed_mech"] == inv
    assert torch.allclose(t["train_transformed"][sel], 1 - t["train_transformed_clean"][sel])


def test_images_are_nchw_floats_in_unit_range_and_padding_centres(digits):
    x, y = digits
    t, _ = mnist.prepare(x, y, MECHS, 32, 0.2, 0.1, 4, 0.5, seed=0)
    img = t["test_canonical"]
    assert img.dtype == torch.float32 and img.shape[1:] == (1, 32, 32)
    assert img.min() >= 0 and img.max() <= 1
    assert img[..., :2, :].abs().sum() == 0 and img[..., :, -2:].abs().sum() == 0


def test_same_seed_same_data_other_seed_other_split(digits):
    x, y = digits
    a, ma = mnist.prepare(x, y, MECHS, 28, 0.2, 0.1, 4, 0.5, seed=0)
    b, mb = mnist.prepare(x, y, MECHS, 28, 0.2, 0.1, 4, 0.5, seed=0)
    c, mc = mnist.prepare(x, y, MECHS, 28, 0.2, 0.1, 4, 0.5, seed=1)
    assert all(torch.equal(a[k], b[k]) for k in a) and ma.equals(mb)
    assert not ma["source_index"].equals(mc["source_index"])


def test_too_few_samples_to_stratify_is_a_clear_error():
    with pytest.raises(PipelineError, match="cannot split"):
        stratified_split(np.array([0, 1, 2]), {"a": 0.5, "b": 0.5}, 0)


def test_balanced_assignment():
    ids = balanced_assignment(23, 5, np.random.default_rng(0))
    assert sorted(np.bincount(ids).tolist()) == [4, 4, 5, 5, 5]


def test_full_mnist_without_network_is_one_clear_error(monkeypatch, tmp_path):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(PipelineError, match="could not download full MNIST.*source: embedded"):
        mnist.load("full", tmp_path)
