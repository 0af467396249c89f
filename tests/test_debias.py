"""The debias study's pieces (pipeline/debias.py): the skewed split, the resampling rules, the
per-cell metrics, the arms' training, and its params. The stage itself runs in test_faces_e2e.py."""
import types

import numpy as np
import pytest
import torch

from pipeline import config, debias, targets
from pipeline.errors import PipelineError
from tests.conftest import with_overrides


def faces_table(per_cell: int):
    race = np.repeat(np.array(config.RACES), 2 * per_cell)
    gender = np.tile(np.repeat([0, 1], per_cell), len(config.RACES))
    return race, gender


MIX = {"white": 0.9, "black": 0.025, "asian": 0.025, "indian": 0.025, "others": 0.025}


def test_allocate_sums_to_the_total_in_proportion():
    assert debias.allocate(MIX, 200) == {"white": 180, "black": 5, "asian": 5, "indian": 5, "others": 5}
    counts = debias.allocate(MIX, 41)
    assert sum(counts.values()) == 41 and counts["white"] == 37


def test_balanced_test_set_has_equal_cells_and_no_overlap_with_training():
    race, gender = faces_table(60)
    train, test = debias.skewed_split(race, gender, MIX, 100, 7, np.random.default_rng(0))
    assert not set(train) & set(test)
    cells = [(race[i], gender[i]) for i in test]
    assert len(set(cells)) == 10 and all(cells.count(c) == 7 for c in set(cells))
    got = {r: int((race[train] == r).sum()) for r in MIX}
    assert got == debias.allocate(MIX, 100)
    again = debias.skewed_split(race, gender, MIX, 100, 7, np.random.default_rng(0))
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)


def test_split_names_the_param_to_change_when_faces_run_out():
    race, gender = faces_table(10)
    with pytest.raises(PipelineError, match="test_per_cell"):
        debias.skewed_split(race, gender, MIX, 10, 11, np.random.default_rng(0))
    with pytest.raises(PipelineError, match="train_size"):
        debias.skewed_split(race, gender, MIX, 100, 5, np.random.default_rng(0))   # 90 white wanted, 10 left


def test_bin_mass_is_each_faces_share_of_its_bin():
    mu = np.array([[0.0], [0.1], [0.2], [1.0]])
    assert np.allclose(debias.bin_mass(mu, 2)[:, 0], [0.75, 0.75, 0.75, 0.25])


@pytest.mark.parametrize("rule", ["max", "product"])
def test_resampling_favours_rare_latent_bins(rule):
    rng = np.random.default_rng(0)
    common = rng.uniform(0, 0.1, (95, 3))   # every common face in the first bin of each dimension,
    rare = rng.uniform(5, 5.1, (5, 3))      # every rare one in the last
    p = debias.latent_probabilities(np.vstack([common, rare]), 10, 0.001, rule)
    assert p.sum() == pytest.approx(1) and (p > 0).all()
    assert p[95:].min() > 5 * p[:95].max()
    assert p[95:].sum() > 0.4     # the 5 % of rare faces get ~half the draws or more (uniform: 5 %)
    flat = debias.latent_probabilities(np.vstack([common, rare]), 10, 1e6, rule)   # huge alpha: uniform
    assert np.allclose(flat, 0.01, rtol=1e-3)


def test_log_space_product_equals_the_direct_product():
    mu = np.random.default_rng(1).normal(size=(30, 4))
    q = debias.bin_mass(mu, 5)
    direct = np.prod(1.0 / (q + 0.01), axis=1)
    assert np.allclose(debias.latent_probabilities(mu, 5, 0.01, "product"), direct / direct.sum())


def test_log_space_product_survives_where_the_direct_product_underflows():
    mu = np.random.default_rng(2).normal(size=(50, 400))
    assert np.prod(debias.bin_mass(mu, 10) + 1e-3, axis=1).min() == 0.0   # the direct form underflows
    p = debias.latent_probabilities(mu, 10, 1e-3, "product")
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1)


def test_group_probabilities_give_every_group_the_same_share():
    groups = np.array(["a"] * 90 + ["b"] * 9 + ["c"])
    p = debias.group_probabilities(groups)
    assert [p[groups == g].sum() for g in "abc"] == pytest.approx([1 / 3] * 3)


def test_cell_metrics_are_exact_on_a_hand_built_table():
    groups = np.array(["a_male"] * 4 + ["a_female"] * 4 + ["b_male"] * 4 + ["b_female"] * 4)
    y = np.array([0] * 4 + [1] * 4 + [0] * 4 + [1] * 4)
    pred = np.array([0, 0, 0, 0,  1, 1, 1, 0,  0, 0, 1, 1,  1, 1, 1, 1])
    m = debias.cell_metrics(pred, y, groups)
    assert m["cells"] == {"a_female": 0.75, "a_male": 1.0, "b_female": 1.0, "b_male": 0.5}
    assert m["mean_acc"] == pytest.approx(0.8125) and m["worst_acc"] == 0.5 and m["worst_cell"] == "b_male"
    assert m["gap"] == 0.5 and m["variance_pp2"] == pytest.approx(np.var([75, 100, 100, 50]))
    # male: predicted 0 at 7 places, 6 of them right; 8 true males, 6 found
    assert m["precision_male"] == pytest.approx(6 / 7) and m["recall_male"] == pytest.approx(6 / 8)
    assert m["precision_female"] == pytest.approx(7 / 9) and m["recall_female"] == pytest.approx(7 / 8)


def test_summarise_and_compare():
    def run(worst, gap, mean):
        return {"mean_acc": mean, "worst_acc": worst, "gap": gap, "variance_pp2": 1.0, "accuracy": mean,
                "precision_male": 1.0, "recall_male": 1.0, "precision_female": None, "recall_female": 1.0,
                "cells": {"c": worst}}
    arms = {"erm": {"runs": [run(0.70, 0.2, 0.9), run(0.72, 0.2, 0.9)]},
            "reweight": {"runs": [run(0.80, 0.1, 0.9)] * 2}, "dbvae": {"runs": [run(0.76, 0.1, 0.89)] * 2}}
    for a in arms.values():
        a["summary"] = debias.summarise(a["runs"])
    assert arms["erm"]["summary"]["worst_acc"] == {"mean": 0.71, "std": 0.01, "missing": 0}
    assert arms["erm"]["summary"]["precision_female"] == {"mean": None, "std": None, "missing": 2}
    c = debias.compare(arms)
    assert c["worst_gain_dbvae"] == pytest.approx(0.05) and c["gap_ratio_dbvae"] == 0.5
    assert c["closed_share_dbvae"] == pytest.approx(0.05 / 0.09, abs=1e-4)
    m = {"arms": arms, "seconds": 10.0}
    assert targets.kind(m) == "debias"
    assert [ok for _, ok in targets.targets(m)] == [True, True, True, True, True]
    arms["dbvae"]["summary"]["mean_acc"]["mean"] = 0.87   # 3 points below ERM
    assert [ok for _, ok in targets.targets(m)][2] is False
    arms["reweight"]["summary"]["worst_acc"]["mean"] = 0.70   # the oracle lost ground: no gain to close
    assert [ok for _, ok in targets.targets(m)][3] is None


P = types.SimpleNamespace(channels=4, latent_dim=3, lr=1e-2, epochs=2, batch_size=8, hflip=True, bins=5,
                          alpha=1e-3, rule="max", recon_weight=1.0, kl_weight=1.0, batch_eval=16)


def test_arms_share_the_initial_weights_and_only_dbvae_trains_the_decoder():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(24, 3, 32, 32, generator=gen)
    y = (x[:, 0].mean((1, 2)) > 0.5).long().numpy()
    groups = np.array(["a_male", "b_female", "a_female"] * 8)
    from pipeline.models.dbvae import DebiasNet
    torch.manual_seed(0)
    start = DebiasNet(32, P.channels, P.latent_dim).state_dict()
    runs = {arm: debias.train_arm(arm, x, y, groups, P, 0) for arm in debias.ARMS}
    models = {arm: model for arm, (model, _) in runs.items()}
    assert runs["reweight"][1]["b_female"] > 0 and sum(runs["dbvae"][1].values()) == pytest.approx(1)
    assert runs["erm"][1] == {"a_female": 0.3333, "a_male": 0.3333, "b_female": 0.3333}   # a shuffle: the mix
    for arm, model in models.items():
        state = model.state_dict()
        assert not torch.equal(state["logit.weight"], start["logit.weight"]), arm
        decoder_moved = not torch.equal(state["vae.up.0.weight"], start["vae.up.0.weight"])
        assert decoder_moved == (arm == "dbvae"), arm
    prob, mu = debias.encode(models["dbvae"], x, 10)
    assert prob.shape == (24,) and mu.shape == (24, 3) and ((0 <= prob) & (prob <= 1)).all()


def test_params_name_bad_race_mixes(params):
    bad = with_overrides(params, {"debias.race_mix": {"white": 0.9, "blak": 0.1}})
    with pytest.raises(PipelineError, match=r"debias.race_mix' names unknown races \['blak'\]"):
        config.from_dict(bad)
    bad = with_overrides(params, {"debias.race_mix": {"white": 0.9, "black": 0.2}})
    with pytest.raises(PipelineError, match="sum to 1"):
        config.from_dict(bad)
    with pytest.raises(PipelineError, match="'debias.rule' must be one of max, product"):
        config.from_dict(with_overrides(params, {"debias.rule": "mean"}))
    with pytest.raises(PipelineError, match="'debias.datasets' names 'mnist'; the debias stage needs UTKFace"):
        config.from_dict(with_overrides(params, {"debias.datasets": ["mnist"]}))
