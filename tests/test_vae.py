"""VAE experts (issue 12): the reparameterisation, the KL, the architecture's contracts, the
winners' loss (adversarial gradient kept) and identity pretraining."""
import math

import pytest
import torch

from pipeline import icm
from pipeline.distributed import Parallel
from pipeline.models.discriminator import Discriminator
from pipeline.models.experts import ExpertBank
from pipeline.models.vae import VAE, LocalVAE, kl_divergence, levels, reparameterise, vae_loss


def test_reparameterisation_has_the_posterior_mean_and_variance():
    mu, logvar = torch.tensor([[1.5, -2.0]]), torch.tensor([[math.log(4.0), math.log(0.25)]])
    eps = torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0))
    z = reparameterise(mu, logvar, eps)
    assert z.mean(0).tolist() == pytest.approx([1.5, -2.0], abs=0.02)
    assert z.var(0).tolist() == pytest.approx([4.0, 0.25], rel=0.02)    # sigma multiplies eps


def test_kl_is_zero_at_the_prior_and_exact_elsewhere():
    assert kl_divergence(torch.zeros(3, 5), torch.zeros(3, 5)).tolist() == [0.0, 0.0, 0.0]
    # per dimension 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2): mu 1, sigma^2 1 -> 0.5; mu 0, sigma^2 e -> 0.5(e - 2)
    kl = kl_divergence(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    assert kl.item() == pytest.approx(0.5 + 0.5 * (math.e - 2), abs=1e-6)


def test_vae_loss_is_per_pixel_mse_plus_the_kl_over_the_pixels():
    out, target = torch.full((2, 1, 2, 2), 0.5), torch.zeros(2, 1, 2, 2)
    assert vae_loss(out, target, torch.tensor([0.0, 4.0]), beta=2.0).tolist() == pytest.approx([0.25, 0.25 + 2.0])


@pytest.mark.parametrize("size, channels", [(28, 1), (32, 3), (64, 3)])
def test_shapes_range_and_a_deterministic_forward(size, channels):
    assert levels(28) == 2 and levels(32) == 2 and levels(64) == 3
    torch.manual_seed(0)
    vae, x = VAE(channels, 8, size, 6), torch.rand(5, channels, size, size)
    with torch.no_grad():
        y, mu = vae(x), vae.encode(x)[0]
        assert y.shape == x.shape and 0 < float(y.min()) and float(y.max()) < 1
        assert torch.equal(y, vae.decode(mu)) and torch.equal(y, vae(x))          # the posterior mean
        assert torch.allclose(vae(x[2:3])[0], y[2], atol=1e-6)                      # per sample
        drawn, kl = vae.sample(x)
        assert drawn.shape == x.shape and kl.shape == (5,) and bool((kl >= 0).all())
    with pytest.raises(ValueError, match="above 8 px"):
        VAE(1, 8, 7, 4)


def test_the_local_vae_has_a_latent_at_every_pixel_and_sees_a_13_px_patch():
    torch.manual_seed(0)
    vae, x = LocalVAE(1, 8, 3), torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        mu, logvar = vae.encode(x)
        assert mu.shape == logvar.shape == (4, 3, 28, 28)
        y = vae(x)
        assert torch.equal(y, vae.decode(mu)) and 0 < float(y.min()) and float(y.max()) < 1
        drawn, kl = vae.sample(x)          # the KL sums over latent channels and pixels
        assert drawn.shape == x.shape and torch.allclose(kl, kl_divergence(mu, logvar))
        assert kl_divergence(torch.zeros(2, 3, 5, 5), torch.zeros(2, 3, 5, 5)).tolist() == [0.0, 0.0]
        x2 = x.clone()
        x2[:, :, 0, 0] = 1 - x2[:, :, 0, 0]    # a corner pixel reaches outputs within 6 px only
        moved = (vae(x2) - y).abs().amax((0, 1)) > 0
        assert moved[:7, :7].any() and not moved[7:, :].any() and not moved[:, 7:].any()
    bank = ExpertBank(2, 1, 8, False, "vae_local", latent_dim=3)
    assert bank.vae and isinstance(bank.experts[1], LocalVAE)
    with pytest.raises(ValueError, match="not 'vae_local'"):
        ExpertBank(2, 1, 8, False, "vae_local", residual=True, latent_dim=3)
    assert not ExpertBank(2, 1, 8, False, "paper").vae and not ExpertBank(2, 1, 8, False, "unet").vae
    with pytest.raises(ValueError, match="unknown expert arch 'vae_global'"):
        ExpertBank(2, 1, 8, False, "vae_global", latent_dim=3)


def vae_bank(n=3, seed=0):
    torch.manual_seed(seed)
    bank = ExpertBank(n, 1, 4, False, "vae", size=12, latent_dim=4, beta=1.0)
    bank.freeze_norm_stats()
    return bank, Discriminator(1, 12, widths=(4, 8, 8), hidden=16)


def test_the_winners_pass_returns_draws_and_their_kl_per_sample():
    bank, _ = vae_bank()
    x, owner = torch.rand(6, 1, 12, 12), torch.tensor([0, 1, 0, 2, 2, 2])
    torch.manual_seed(1)
    out, kl = bank.forward_assigned(x, owner)
    torch.manual_seed(1)
    ref = [bank.experts[0].sample(x[[0, 2]]), bank.experts[1].sample(x[[1]]), bank.experts[2].sample(x[[3, 4, 5]])]
    assert torch.allclose(out[[0, 2]], ref[0][0]) and torch.allclose(kl[[3, 4, 5]], ref[2][1])


@pytest.mark.parametrize("vae_weight", [0.0, 1.0])
def test_step_trains_only_the_winners_and_keeps_the_adversarial_gradient(vae_weight):
    """With vae_weight 0 the winners' loss is -log D alone: the experts still move (the student code
    dropped this gradient); the losers never move."""
    bank, disc = vae_bank()
    bank.experts[2].load_state_dict(bank.experts[0].state_dict())     # ties go to expert 0: 2 loses
    before = [[p.detach().clone() for p in e.parameters()] for e in bank.experts]
    opt_e, opt_d = torch.optim.Adam(bank.parameters(), lr=1e-2), torch.optim.Adam(disc.parameters(), lr=1e-2)
    s = icm.icm_step(bank, disc, opt_e, opt_d, torch.rand(8, 1, 12, 12), torch.rand(8, 1, 12, 12), "argmax", 8,
                     0.0, None, Parallel.single(bank, disc), vae_weight=vae_weight)
    for i, e in enumerate(bank.experts):
        moved = any(not torch.equal(a, b) for a, b in zip(before[i], e.parameters()))
        assert moved == (s.wins[i] > 0), i
    assert s.wins[2] == 0 and sum(s.wins) == 8


def test_identity_pretraining_lowers_reconstruction_plus_kl(digits):
    """300 real digits, 200 steps: measured 0.22-0.24 -> 0.047-0.049 on seeds 0-2 (the mean-image MSE is 0.065)."""
    torch.manual_seed(0)
    x = torch.from_numpy(digits[0]).float().div(255).unsqueeze(1)
    vae = VAE(1, 16, 28, 16)
    before = icm.identity_loss(vae, x, 1.0).item()
    icm.pretrain_identity([vae], x, 3e-3, 32, 1e-9, 200, torch.Generator().manual_seed(0), beta=1.0)
    after = icm.identity_loss(vae, x, 1.0).item()
    mean_image = (x - x.mean(0)).pow(2).mean().item()
    assert after < 0.4 * before and after < mean_image, (before, after, mean_image)


def test_a_posterior_collapsed_vae_expert_is_flagged_dead_and_a_reconstructing_one_is_not(digits):
    """The student study's failure: a VAE expert whose decoder ignores its input (the posterior mean
    no longer depends on x) draws one image for every input. The dead rule must catch it through
    the spread ratio, whether it wins or not; its pretrained twin, which reconstructs, stays alive."""
    from pipeline import evaluation
    from pipeline.models.classifier import Classifier
    torch.manual_seed(0)
    x = torch.from_numpy(digits[0][:200]).float().div(255).unsqueeze(1)
    bank = ExpertBank(2, 1, 16, False, "vae", size=28, latent_dim=16, beta=1.0)
    icm.pretrain_identity([bank.experts[0]], x, 3e-3, 32, 1e-9, 200, torch.Generator().manual_seed(0), beta=1.0)
    bank.experts[1].load_state_dict(bank.experts[0].state_dict())
    with torch.no_grad():                                  # mu = the bias alone: posterior collapse
        bank.experts[1].posterior.weight.zero_()
    bank.freeze_norm_stats()
    disc = Discriminator(1, 28, widths=(4, 4, 4), hidden=8)
    for p in disc.parameters():
        p.data.zero_()                                     # every tie goes to expert 0 ...
    clf = Classifier(1, 28, 10).eval()
    for flip in (False, True):                             # ... or, flipped, to the collapsed expert
        b = ExpertBank(2, 1, 16, False, "vae", size=28, latent_dim=16, beta=1.0)
        b.load_state_dict(bank.state_dict())
        if flip:
            b.experts[0].load_state_dict(bank.experts[1].state_dict())
            b.experts[1].load_state_dict(bank.experts[0].state_dict())
        b.freeze_norm_stats()
        run = evaluation.run_experts(b, disc, clf, x, 64)
        r = evaluation.experts_section(run, x, run["pred"] >= 0, "acc", "ssim_input")["per_expert"]
        healthy, collapsed = (r["expert_1"], r["expert_0"]) if flip else (r["expert_0"], r["expert_1"])
        assert collapsed["spread_ratio"] < 1e-6 and collapsed["dead"], collapsed
        assert healthy["spread_ratio"] > evaluation.DEAD_SPREAD, healthy
        assert collapsed["win_share"] == (1.0 if flip else 0.0)
    healthy_winner = evaluation.experts_section(
        evaluation.run_experts(bank, disc, clf, x, 64), x, torch.ones(200, 2, dtype=torch.bool), "acc",
        "ssim_input")["per_expert"]["expert_0"]
    assert not healthy_winner["dead"] and healthy_winner["ssim_input"] > 0.3, healthy_winner
