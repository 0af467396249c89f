"""Per-expert metrics: every expert is measured on every test input, so a collapsed expert is
flagged dead however few samples it wins (a check on winners only once passed an expert that
painted every face solid red); and the synthetic-faces PSNR ceiling and restoration."""
import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline import evaluation, icm, imagemetrics, mechanisms
from pipeline.models.classifier import Classifier, predict
from pipeline.models.discriminator import Discriminator
from pipeline.models.experts import ExpertBank


@pytest.fixture(scope="module")
def data(digits):
    """200 real digits in [0, 1] as (N, 1, 28, 28), and their labels."""
    x, y = digits
    idx = np.arange(0, 300, 3)[:100].tolist() + np.arange(1, 300, 3)[:100].tolist()
    return torch.tensor(x[idx]).float().div(255).unsqueeze(1), torch.tensor(y[idx])


@pytest.fixture(scope="module")
def identity_bank(data):
    """A tiny bank of two identical experts, pretrained to approximately the identity."""
    torch.manual_seed(0)
    bank = ExpertBank(2, 1, 8, False, "paper")
    icm.pretrain_identity([bank.experts[0]], data[0], 3e-3, 32, 0.004, 400, torch.Generator().manual_seed(0))
    bank.experts[1].load_state_dict(bank.experts[0].state_dict())
    bank.freeze_norm_stats()
    return bank


def zero_disc() -> Discriminator:
    """D scores every image 0, so every argmax tie goes to expert 0."""
    disc = Discriminator(1, 28, widths=(4, 4, 4), hidden=8)
    for p in disc.parameters():
        p.data.zero_()
    return disc


def evaluate(bank, disc, data) -> dict:
    x, y = data
    clf = Classifier(1, 28, 10).eval()
    run = evaluation.run_experts(bank, disc, clf, x, 64)
    return evaluation.experts_section(run, x, run["pred"] == y[:, None], "acc", "ssim_input")


def constant_copy(bank, i: int):
    """`bank` with expert i's output conv zeroed and a constant bias: the same image for every input."""
    bank = copy.deepcopy(bank)
    with torch.no_grad():
        bank.experts[i].out.weight.zero_()
        bank.experts[i].out.bias.fill_(2.0)
    return bank


def test_healthy_identity_expert_is_alive_and_one_that_wins_nothing_is_dead(identity_bank, data):
    r = evaluate(identity_bank, zero_disc(), data)
    e0, e1 = r["per_expert"]["expert_0"], r["per_expert"]["expert_1"]
    assert e0["win_share"] == 1.0 and e0["spread_ratio"] > 0.8 and e0["ssim_input"] > 0.6
    assert not e0["dead"]
    # e1 is just as healthy, but wins nothing on the test split: dead all the same
    assert e1["win_share"] == 0.0 and e1["spread_ratio"] > 0.8 and e1["acc_won"] is None
    assert e1["dead"]
    assert (r["alive_experts"], r["dead_experts"]) == (1, 1)


def test_constant_output_expert_is_dead_even_when_it_wins_everything(identity_bank, data):
    r = evaluate(constant_copy(identity_bank, 0), zero_disc(), data)
    e0 = r["per_expert"]["expert_0"]
    assert e0["win_share"] == 1.0 and e0["spread_ratio"] < 1e-6 and e0["dead"]


def test_constant_output_expert_is_measured_on_every_input_with_a_trained_like_d(identity_bank, data):
    """A random D: whatever the constant expert wins (maybe nothing, maybe one sample), its spread is
    measured over all inputs, not over its wins."""
    torch.manual_seed(1)
    disc = Discriminator(1, 28, widths=(4, 4, 4), hidden=8).eval()
    r = evaluate(constant_copy(identity_bank, 1), disc, data)
    e1 = r["per_expert"]["expert_1"]
    assert e1["spread_ratio"] < 1e-6 and e1["dead"]
    assert 0 < e1["d_score"] < 1 and -1 <= e1["ssim_input"] <= 1 and 0 <= e1["acc"] <= 1
    assert r["dead_experts"] >= 1


def test_dead_rule_parts():
    row = {"win_share": 0.5, "spread_ratio": 1.0, "ssim_input": 0.9, "acc_won": 0.9}
    assert not evaluation.is_dead(row, "ssim_input")
    assert evaluation.is_dead({**row, "win_share": 0.0}, "ssim_input")
    assert evaluation.is_dead({**row, "spread_ratio": 0.29}, "ssim_input")
    assert evaluation.is_dead({**row, "ssim_input": 0.29}, "ssim_input")
    assert not evaluation.is_dead({**row, "ssim_input": -0.5}, "acc_won")   # MNIST: the inverter is fine
    assert evaluation.is_dead({**row, "acc_won": 0.1}, "acc_won")
    assert not evaluation.is_dead({**row, "spread_ratio": None}, "ssim_input")
    assert evaluation.is_dead({**row, "colour_outliers": 0.51}, "ssim_input")     # faces in no real face's colours
    assert not evaluation.is_dead({**row, "colour_outliers": 0.4}, "ssim_input")


def test_spread_subset_is_fixed_and_bounded():
    assert evaluation.spread_subset(3).tolist() == [0, 1, 2]
    idx = evaluation.spread_subset(10_000)
    assert len(idx) == evaluation.SPREAD_SAMPLES and idx[0] == 0 and idx[-1] == 9_999
    assert torch.equal(idx, evaluation.spread_subset(10_000))


def test_restoration_and_psnr_ceiling(monkeypatch):
    """Synthetic faces: an exact inverse sets the ceiling; no inverse -> null ceiling and restoration."""
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(8, 3, 16, 16, generator=g)
    x = torch.cat([clean[:4] * 0.5, clean[4:] * 0.8])       # two 'mechanisms': darken, fade
    mech = np.array([0] * 4 + [1] * 4)
    inverses = {"darken": lambda v: (v * 20.0).round() / 10, "fade": lambda v: None}   # lossy: quantised
    monkeypatch.setattr(mechanisms, "face_inverse", lambda name, v, s: inverses[name](v), raising=False)
    ceiling = evaluation.ceiling_psnr(["darken", "fade"], x, mech, clean, strength=None)
    assert torch.all((ceiling[:4] > 25) & (ceiling[:4] < 40)) and torch.isnan(ceiling[4:]).all()

    out = (x + clean) / 2                                    # halfway to the clean faces
    d = torch.full((8,), 0.5)
    p = np.ones(8, dtype=int)
    clf = {"val_acc": 0.9, "test_acc": 0.9}
    train = {"iterations": 1, "seconds": 1.0, "iters_per_second": 1.0, "pretrain_seconds": 1.0}
    r = evaluation.faces(["darken", "fade"], mech, np.zeros(8, dtype=int), 2, x, out, d, p, p, clf, train,
                         clean, ceiling)
    dark, fade = r["per_mechanism"]["darken"], r["per_mechanism"]["fade"]
    assert dark["psnr_ceiling"] > 25 and 0 < dark["restoration"] < 1
    assert dark["restoration"] == pytest.approx((dark["psnr_outputs"] - dark["psnr_inputs"])
                                                / (dark["psnr_ceiling"] - dark["psnr_inputs"]))
    assert fade["psnr_ceiling"] is None and fade["restoration"] is None
    assert r["restoration_min"] == dark["restoration"] and r["psnr_ceiling"] == pytest.approx(dark["psnr_ceiling"])
    assert evaluation.restoration(20.0, 25.0, 18.0) is None               # ceiling below the input
    assert evaluation.restoration(20.0, 25.0, 100.0) is None              # lossless inverse (hflip): no finite ceiling
    assert evaluation.restoration(20.0, 25.0, 99.0) is None               # >= 99 dB counts as the cap
    assert evaluation.restoration(20.0, 25.0, 98.0) == pytest.approx(5 / 78)
    assert evaluation.restoration(20.0, 25.0, 30.0) == pytest.approx(0.5)


def test_capped_ceilings_do_not_inflate_a_mechanisms_ceiling():
    """brighten clips bright faces (finite ceiling) but not dark ones (lossless: the 100 dB cap).
    The cap is not a measurement, so ceiling and restoration use the clipped faces only."""
    g = torch.Generator().manual_seed(0)
    clean = torch.cat([torch.rand(4, 3, 16, 16, generator=g) * 0.4 + 0.1,      # + 0.2 stays below 1
                       torch.rand(4, 3, 16, 16, generator=g) * 0.5 + 0.5])      # + 0.2 clips
    strength = mechanisms.FaceStrength(shift=1, cast=0.2, brightness=-0.2, contrast=0.5, band=0.2, blur=0.05)
    x = mechanisms.FACE_MECHANISMS["brighten"](clean, strength)
    mech = np.zeros(8, dtype=int)
    ceiling = evaluation.ceiling_psnr(["brighten"], x, mech, clean, strength)
    assert (ceiling[:4] == 100).all() and (ceiling[4:] < 40).all()
    out = (x + clean) / 2
    p = np.ones(8, dtype=int)
    train = {"iterations": 1, "seconds": 1.0, "iters_per_second": 1.0, "pretrain_seconds": 1.0}
    r = evaluation.faces(["brighten"], mech, np.zeros(8, dtype=int), 1, x, out, torch.full((8,), 0.5), p, p,
                         {"val_acc": 0.9, "test_acc": 0.9}, train, clean, ceiling)
    b = r["per_mechanism"]["brighten"]
    top = float(ceiling[4:].mean())
    assert b["psnr_ceiling"] == pytest.approx(top) and r["psnr_ceiling"] == pytest.approx(top)
    pin, pout = imagemetrics.psnr(x[4:], clean[4:]).mean(), imagemetrics.psnr(out[4:], clean[4:]).mean()
    assert b["restoration"] == pytest.approx(float((pout - pin) / (top - pin)), rel=1e-5)
    assert r["restoration_min"] == b["restoration"]


def test_faces_on_test_reports_every_expert(identity_bank, data, monkeypatch):
    """The faces contract end to end on tiny grey 'faces' (the digits), with the synthetic extras."""
    x, _ = data
    monkeypatch.setattr(mechanisms, "face_inverse", lambda name, v, s: (v * 20).round() / 10 if name == "a" else None,
                        raising=False)   # a lossy inverse: a finite ceiling
    t = {"test_transformed": x * 0.5, "test_transformed_mech": torch.arange(len(x)) % 2, "mechanisms": ["a", "b"],
         "test_transformed_clean": x}
    train = {"iterations": 1, "seconds": 1.0, "iters_per_second": 1.0, "pretrain_seconds": 1.0}
    clf = Classifier(1, 28, 2).eval()
    r, owner = evaluation.faces_on_test(identity_bank, zero_disc(), clf, {"val_acc": 0.5, "test_acc": 0.5}, t,
                                        train, 64, torch.device("cpu"), strength=object())
    assert "collapse" not in r and set(r["per_expert"]) == {"expert_0", "expert_1"}
    assert set(r["per_expert"]["expert_0"]) == {"win_share", "spread_ratio", "d_score", "ssim_input",
                                                "canonical_rate", "canonical_rate_won", "ssim_clean_won", "dead"}
    assert (owner == 0).all() and r["dead_experts"] == 1 and r["alive_experts"] == 1
    assert 30 < r["psnr_ceiling"] < 90 and r["per_mechanism"]["b"]["restoration"] is None
    assert r["restoration_min"] == r["per_mechanism"]["a"]["restoration"] is not None


class ShiftBank(torch.nn.Module):
    """Two fixed 'experts': the exact inverse of a (4, 4) translation, and the identity."""
    n = 2

    def forward_all(self, x):
        return torch.stack([mechanisms.translate(x, -4, -4), x], dim=1)


def test_synthetic_mode_keeps_a_perfect_translation_inverter_alive(data, monkeypatch):
    """Its outputs are shifted 4 px from its inputs (SSIM ~0 against them), yet they are the clean
    images: in synthetic mode "input kept" is judged against the clean originals of its wins."""
    clean = mechanisms.translate(data[0], -4, -4)            # digits whose translation loses nothing
    x = mechanisms.translate(clean, 4, 4)
    monkeypatch.setattr(mechanisms, "face_inverse", lambda name, v, s: None, raising=False)
    t = {"test_transformed": x, "test_transformed_mech": torch.zeros(len(x), dtype=torch.long),
         "mechanisms": ["translate"], "test_transformed_clean": clean}
    train = {"iterations": 1, "seconds": 1.0, "iters_per_second": 1.0, "pretrain_seconds": 1.0}
    r, _ = evaluation.faces_on_test(ShiftBank(), zero_disc(), Classifier(1, 28, 2).eval(),
                                    {"val_acc": 0.5, "test_acc": 0.5}, t, train, 64, torch.device("cpu"), object())
    e0 = r["per_expert"]["expert_0"]
    assert e0["ssim_input"] < 0.3 and e0["ssim_clean_won"] > 0.99 and not e0["dead"]
    assert r["psnr_outputs"] == 100.0 and r["psnr_ceiling"] is None and r["restoration_min"] is None


class Brightness(torch.nn.Module):
    """A stand-in gender classifier: says 1 (female) for bright images, 0 for dark ones."""

    def forward(self, x):
        m = x.flatten(1).mean(1)
        return torch.stack([0.5 - m, m - 0.5], 1)


def test_gender_robustness_scores_canonical_inputs_and_outputs_per_group():
    bright, dark = torch.full((2, 3, 4, 4), 0.9), torch.full((2, 3, 4, 4), 0.1)
    t = {"test_canonical": torch.cat([bright, dark]), "test_canonical_gender": torch.tensor([1, 1, 0, -1]),
         "test_transformed": torch.cat([dark, bright, dark]), "test_transformed_gender": torch.tensor([1, 1, 1, 0, 0, 0]),
         "test_transformed_mech": torch.tensor([0, 0, 1, 1, 0, 1]), "mechanisms": ["white", "black"]}
    out = torch.cat([bright, bright, dark])            # the winners brighten group white's first two faces
    g = evaluation.gender_robustness(Brightness(), t, out, 4, torch.device("cpu"))
    assert g["canonical"] == pytest.approx(1.0)          # 3 labelled canonical faces, all right; -1 left out
    # white: samples 0, 1 (female, dark in -> bright out) and 4 (male, dark -> dark)
    assert g["white"] == {"gender_acc_inputs": pytest.approx(1 / 3), "gender_acc_outputs": pytest.approx(1.0)}
    # black: samples 2 (female, bright -> bright), 3 (male, bright -> bright), 5 (male, dark -> dark)
    assert g["black"] == {"gender_acc_inputs": pytest.approx(2 / 3), "gender_acc_outputs": pytest.approx(2 / 3)}


def green(x: torch.Tensor) -> torch.Tensor:
    """Red and green swapped: the green faces a faces expert once produced, structure intact."""
    return x[:, [1, 0, 2]]


def test_colour_outliers_flag_green_faces_but_not_real_or_darker_ones(mirror_faces):
    ref = imagemetrics.colour_reference(mirror_faces[:80])
    held_out = mirror_faces[80:]
    assert imagemetrics.colour_outliers(held_out, ref).float().mean() < 0.1
    assert imagemetrics.colour_outliers(held_out * 0.7, ref).float().mean() < 0.1   # brightness is not colour
    assert imagemetrics.colour_outliers(green(held_out), ref).float().mean() > 0.9
    warm = mechanisms.colour_cast(held_out, 0.2)
    assert imagemetrics.colour_outliers(warm, ref).float().mean() > 0.5


class GreenBank(torch.nn.Module):
    """Two fixed 'experts' on RGB faces: one that turns every face green, and the identity."""
    n = 2

    def forward_all(self, x):
        return torch.stack([green(x), x], dim=1)


def test_an_expert_that_turns_faces_green_is_dead_though_ssim_keeps_the_face(mirror_faces):
    """The colour part of the dead rule: the green expert wins every face (D ties go to expert 0),
    keeps its structure and varies with its input, so only its colours give it away."""
    x = mirror_faces
    t = {"test_transformed": x[:100], "test_transformed_mech": torch.arange(100) % 2, "mechanisms": ["a", "b"],
         "test_canonical": x[100:]}
    disc = Discriminator(3, 32, widths=(4, 4, 4), hidden=8)
    for p in disc.parameters():
        p.data.zero_()
    train = {"iterations": 1, "seconds": 1.0, "iters_per_second": 1.0, "pretrain_seconds": 1.0}
    r, _ = evaluation.faces_on_test(GreenBank(), disc, Classifier(3, 32, 2).eval(), {"val_acc": 0.5, "test_acc": 0.5},
                                    t, train, 64, torch.device("cpu"))
    e0, e1 = r["per_expert"]["expert_0"], r["per_expert"]["expert_1"]
    assert e0["win_share"] == 1.0
    assert e0["ssim_input"] > evaluation.DEAD_KEPT and e0["spread_ratio"] > evaluation.DEAD_SPREAD
    assert e0["colour_outliers"] > 0.9 and e0["dead"]
    assert e1["colour_outliers"] < 0.1 and e1["colour_outliers"] == pytest.approx(r["colour_outliers_inputs"])


class MeanLogit(torch.nn.Module):
    """A stand-in D whose logit is the image's mean value minus one half."""

    def forward(self, x):
        return x.flatten(1).mean(1) - 0.5


def test_d_generalisation_compares_seen_and_held_out_canonical_faces():
    t = {"train_canonical": torch.full((30, 3, 4, 4), 1.0), "test_canonical": torch.full((20, 3, 4, 4), 0.5)}
    g = evaluation.d_generalisation(MeanLogit(), t, 8, torch.device("cpu"), limit=10)
    assert g["train"] == pytest.approx(float(torch.sigmoid(torch.tensor(0.5))))
    assert g["test"] == pytest.approx(0.5)


def test_colour_reference_needs_rgb_and_enough_real_faces(mirror_faces):
    t = {"test_transformed": mirror_faces[:10], "test_canonical": mirror_faces[10:30]}
    assert evaluation.colour_reference(t, synthetic=False) is not None          # 30 real faces in all
    assert evaluation.colour_reference(t, synthetic=True) is None               # 20 canonical: too few
    grey = {"test_transformed": mirror_faces[:60, :1], "test_canonical": mirror_faces[60:, :1]}
    assert evaluation.colour_reference(grey, synthetic=True) is None


def test_mnist_reads_clean_accuracy_on_the_same_digits_as_the_experts():
    # canonical test digits all right, the transformed digits' clean originals half right: the paired
    # reference must come from the latter, overall and per mechanism
    mech, y = np.array([0, 0, 1, 1]), np.array([3, 4, 5, 6])
    p_same = np.array([3, 0, 5, 0])           # the originals of the transformed digits: 2 of 4 right
    p_out = np.array([3, 4, 5, 0])            # the winners' outputs: 3 of 4 right
    train = {"iterations": 1, "seconds": 1.0, "iters_per_second": 1.0, "iterations_to_specialize": None,
             "seconds_to_specialize": None}
    r = evaluation.mnist(["up", "down"], mech, np.array([0, 0, 1, 1]), 2, np.array([1, 2]), np.array([1, 2]),
                         np.zeros(4, int), p_out, y, train, p_same)
    c = r["classifier"]
    assert (c["acc_clean"], c["acc_clean_same_digits"], c["acc_experts"]) == (1.0, 0.5, 0.75)
    assert r["per_mechanism"]["up"]["acc_clean_same_digits"] == 0.5
    assert r["per_mechanism"]["down"]["acc_experts"] == 0.5


class FixedBank(torch.nn.Module):
    """Experts as plain functions of the batch (no weights)."""
    def __init__(self, *fns):
        super().__init__()
        self.fns, self.n = fns, len(fns)

    def forward_all(self, x):
        return torch.stack([f(x) for f in self.fns], 1)


class DarkIsCanonical(torch.nn.Module):
    """D: the darker the image, the more canonical (digits are white strokes on black)."""
    def forward(self, x):
        return -x.mean(dim=(1, 2, 3))


class DarkIsOne(torch.nn.Module):
    """Evaluator: label 1 for a dark image, 0 for a bright one."""
    def forward(self, x):
        dark = (x.mean(dim=(1, 2, 3)) < 0.5).float()
        return torch.stack([1 - dark, dark], 1)


def test_every_mechanism_applies_each_mechanism_to_every_test_digit():
    # 4 dark test digits (2 per half), labels 1, 1, 1, 0: clean accuracy 0.75 on all 4
    x = torch.zeros(4, 1, 8, 8)
    x[:, :, 3:5, 3:5] = 1.0
    t = {"test_canonical": x[:2], "test_transformed_clean": x[2:], "test_canonical_digit": torch.tensor([1, 1]),
         "test_transformed_digit": torch.tensor([1, 0]), "mechanisms": ["up", "invert"]}
    strength = evaluation.mnist_strength(SimpleNamespace(shift=1, noise_variance=0.25), 0)
    p_digits = predict(DarkIsOne(), evaluation.clean_test_digits(t)[0], 3).numpy()   # all four dark: 1, 1, 1, 1
    # an identity and an inverter: D picks the inverter on inverted digits only, so both mechanisms
    # are undone and the accuracy stays the clean one
    good = evaluation.every_mechanism(FixedBank(lambda v: v, lambda v: 1 - v), DarkIsCanonical(), DarkIsOne(), t,
                                      strength, 3, torch.device("cpu"), p_digits)
    assert (good["acc_clean_all_digits"], good["acc_experts_all_digits"]) == (0.75, 0.75)
    assert good["per_mechanism"]["invert"] == {"acc_experts_all_digits": 0.75, "purity_all_digits": 1.0}
    # identities only: the inverted digits stay bright, so the evaluator gets only the one labelled 0 right
    bad = evaluation.every_mechanism(FixedBank(lambda v: v, lambda v: v), DarkIsCanonical(), DarkIsOne(), t,
                                     strength, 3, torch.device("cpu"), p_digits)
    assert bad["per_mechanism"]["invert"]["acc_experts_all_digits"] == 0.25
    assert bad["per_mechanism"]["up"]["acc_experts_all_digits"] == 0.75
    assert bad["acc_experts_all_digits"] == 0.5
