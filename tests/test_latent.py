"""The latent study's measures on hand-built latents, where the answer is known."""
import math

import numpy as np
import pytest
import torch

from pipeline import latent
from pipeline.models.vae import VAE


def test_entropy_and_age_bins():
    assert latent.entropy(np.array([0, 1, 0, 1])) == pytest.approx(math.log(2))
    assert latent.entropy(np.array([2, 2, 2])) == 0.0
    assert latent.age_bins(np.array([0, 12, 13, 19, 20, 59, 60, 99]), (13, 20, 60)).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_mig_is_high_when_one_dimension_copies_the_label_and_low_when_two_share_it():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    noise = rng.normal(size=(600, 3))
    copy = np.column_stack([noise[:, 0], y + 0.01 * rng.normal(size=600), noise[:, 1:]])
    mi = latent.mutual_information(copy, y, 0)
    assert int(np.argmax(mi)) == 1 and mi[1] == pytest.approx(math.log(2), abs=0.1)   # it carries all of H(y)
    assert latent.mig(mi, y) > 0.8
    twice = np.column_stack([copy, y + 0.01 * rng.normal(size=600)])                   # a second copy
    assert latent.mig(latent.mutual_information(twice, y, 0), y) < 0.2
    assert latent.mig(np.array([0.5, 0.2]), np.array([0, 1])) == pytest.approx(0.3 / math.log(2))


def test_probes_auc_and_ranking_on_a_planted_latent():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    z = rng.normal(size=(400, 4))
    z[:, 2] -= 3 * y                                                                   # dim 2, negative sign
    assert latent.probe(z[:300], y[:300], z[300:], y[300:], 0) > 0.9
    assert latent.auc_either_way(z[:, 2], y) > 0.9 and latent.auc_either_way(z[:, 0], y) < 0.65
    study = {"gender": {"mi_per_dim": [0.0, 0.1, 0.6, 0.0]}, "age": {"mi_per_dim": [0.3, 0.0, 0.1, 0.05]}}
    assert latent.ranked_dims(study, 2) == [(2, "gender", 0.6), (0, "age", 0.3)]


def test_traversal_sets_one_dimension_and_holds_the_others():
    torch.manual_seed(0)
    vae, faces = VAE(3, 4, 32, 5).eval(), torch.rand(2, 3, 32, 32)
    values = np.linspace(-3, 3, 7)
    grid = latent.traversal(vae, faces, [4, 1], values)
    assert grid.shape == (4, 7, 3, 32, 32)
    with torch.no_grad():
        z = vae.encode(faces[1:2])[0].repeat(7, 1)
        z[:, 4] = torch.tensor(values, dtype=z.dtype)
        assert torch.allclose(grid[1], vae.decode(z))                      # dim 4, face 1
    assert not torch.allclose(grid[0, 0], grid[0, -1])                      # the sweep changes the output
