import numpy as np
import pytest
import torch

from pipeline import icm, loop
from pipeline.distributed import Launch, Parallel
from pipeline.models.discriminator import Discriminator
from pipeline.models.experts import ExpertBank


def test_argmax_picks_the_highest_score():
    scores = torch.tensor([[0.1, 0.9, 0.3], [2.0, -1.0, 1.0]])
    assert icm.assign_argmax(scores).tolist() == [1, 0]


def test_capacity_passes_overflow_to_the_next_best_expert():
    # Every sample prefers expert 0; capacity 2 forces the rest to their second choice.
    scores = torch.tensor([[9.0, 1.0, 0.0], [8.0, 0.0, 1.0], [7.0, 2.0, 0.0], [6.0, 0.0, 3.0]])
    assert icm.assign_capacity(scores, 2).tolist() == [0, 0, 1, 2]


def test_capacity_never_exceeded_and_every_sample_assigned():
    scores = torch.randn(32, 10, generator=torch.Generator().manual_seed(0))
    cap = icm.capacity(32, 10, 1.5)
    owner = icm.assign_capacity(scores, cap)
    assert cap == 5 and (owner >= 0).all() and torch.bincount(owner).max() <= cap


def test_capacity_too_small_is_refused():
    with pytest.raises(ValueError):
        icm.assign_capacity(torch.zeros(10, 2), 4)


def greedy_reference(scores: torch.Tensor, cap: int) -> list[int]:
    """The rule as first written: walk the pairs by descending score, one at a time."""
    b, n = scores.shape
    owner, load = [-1] * b, [0] * n
    for flat in torch.argsort(scores.flatten(), descending=True, stable=True).tolist():
        i, j = divmod(flat, n)
        if owner[i] < 0 and load[j] < cap:
            owner[i], load[j] = j, load[j] + 1
    return owner


@pytest.mark.parametrize("seed", range(40))
def test_capacity_in_torch_ops_equals_the_greedy_walk(seed):
    g = torch.Generator().manual_seed(seed)
    b, n = int(torch.randint(1, 40, (1,), generator=g)), int(torch.randint(1, 9, (1,), generator=g))
    cap = -(-b // n) + int(torch.randint(0, 3, (1,), generator=g))
    # Half the cases use few distinct values, so that ties (broken by flat index) are common.
    scores = (torch.randint(0, 4, (b, n), generator=g).float() if seed % 2
              else torch.randn(b, n, generator=g))
    assert icm.assign_capacity(scores, cap).tolist() == greedy_reference(scores, cap)


def test_hysteresis_keeps_an_owner_under_a_small_margin():
    scores = torch.tensor([[1.00, 1.05, 0.0], [1.00, 1.05, 0.0], [1.00, 1.50, 0.0]])
    previous = torch.tensor([0, -1, 0])
    kept = icm.assign_argmax(icm.assign_hysteresis(scores, previous, 0.1))
    assert kept.tolist() == [0, 1, 1]        # beaten by 0.05 < margin: kept; no owner yet; beaten by 0.5: moves
    assert icm.assign_argmax(icm.assign_hysteresis(scores, previous, 0.0)).tolist() == [1, 1, 1]
    assert torch.equal(scores[0], torch.tensor([1.00, 1.05, 0.0]))   # the input is not modified


def test_r1_is_the_squared_input_gradient_of_d():
    lin = torch.nn.Linear(12, 1)
    x = torch.rand(5, 12, requires_grad=True)
    penalty = icm.r1_penalty(lin(x).squeeze(1), x)
    assert float(penalty.detach()) == pytest.approx(float(lin.weight.detach().pow(2).sum()), rel=1e-6)
    penalty.backward()                        # differentiable in D's weights: d/dw |w|^2 = 2w
    assert torch.allclose(lin.weight.grad, 2 * lin.weight.detach())


def test_step_adds_the_r1_term_to_d_loss():
    g = torch.Generator().manual_seed(0)
    xc, xt = torch.rand(8, 1, 12, 12, generator=g), torch.rand(8, 1, 12, 12, generator=g)
    losses = []
    # a large gamma: the R1 term of a fresh D is ~1e-4, and the two d_losses (~1.4) differ by it in float32
    for gamma in (0.0, 1e4):
        bank, disc = make(3)
        opt_e, opt_d = torch.optim.Adam(bank.parameters()), torch.optim.Adam(disc.parameters())
        if gamma:
            real = xc.clone().requires_grad_(True)
            expected = gamma / 2 * float(icm.r1_penalty(disc(real).float(), real).detach())
        losses.append(icm.icm_step(bank, disc, opt_e, opt_d, xc, xt, "argmax", 8, 0.0, None,
                                   Parallel.single(bank, disc), r1_gamma=gamma).d_loss)
    assert expected > 0 and losses[1] - losses[0] == pytest.approx(expected, rel=1e-4)


def test_winners_are_picked_from_fp32_scores_under_bf16_autocast():
    # Near-identical experts: bf16 logits tie and argmax would always pick expert 0.
    bank, disc = make(2)
    bank.experts[1].load_state_dict(bank.experts[0].state_dict())
    with torch.no_grad():
        w = bank.experts[1].out.weight
        w += 1e-3 * torch.randn(w.shape, generator=torch.Generator().manual_seed(0))
    xt = torch.rand(16, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fp32 = disc(bank.forward_all(xt).flatten(0, 1)).view(16, 2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = disc(bank.forward_all(xt).flatten(0, 1)).float().view(16, 2)
    assert (bf16[:, 0] == bf16[:, 1]).any() and (bf16.argmax(1) != fp32.argmax(1)).any()
    opt_e, opt_d = torch.optim.SGD(bank.parameters(), lr=0.0), torch.optim.SGD(disc.parameters(), lr=0.0)
    s = icm.icm_step(bank, disc, opt_e, opt_d, torch.rand(16, 1, 12, 12), xt, "argmax", 16, 0.0,
                     torch.bfloat16, Parallel.single(bank, disc))
    assert s.owner.tolist() == fp32.argmax(1).tolist()


def make(n=3, seed=0):
    torch.manual_seed(seed)
    bank = ExpertBank(n, 1, 8, False, "paper")
    bank.freeze_norm_stats()
    disc = Discriminator(1, 12, widths=(4, 8, 8), hidden=16)
    return bank, disc


def test_step_updates_only_the_winners():
    bank, disc = make(3)
    # Expert 2 is an exact copy of expert 0: every score ties, and argmax gives the tie to expert 0,
    # so expert 2 is a loser whose weights must not move.
    bank.experts[2].load_state_dict(bank.experts[0].state_dict())
    x_trans = torch.rand(8, 1, 12, 12)
    before = [[p.detach().clone() for p in e.parameters()] for e in bank.experts]
    d_before = [p.detach().clone() for p in disc.parameters()]
    opt_e = torch.optim.Adam(bank.parameters(), lr=1e-2)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-2)
    with torch.no_grad():
        scores = disc(bank.forward_all(x_trans).flatten(0, 1)).view(8, 3)
    expected_winners = set(scores.argmax(1).tolist())
    assert 2 not in expected_winners and expected_winners
    s = icm.icm_step(bank, disc, opt_e, opt_d, torch.rand(8, 1, 12, 12), x_trans, "argmax", 8, 0.0, None,
                     Parallel.single(bank, disc))
    assert set(np.flatnonzero(s.wins).tolist()) == expected_winners
    for i, e in enumerate(bank.experts):
        changed = any(not torch.equal(a, b) for a, b in zip(before[i], e.parameters()))
        assert changed == (i in expected_winners), i
        if i not in expected_winners:
            assert all(p.grad is None for p in e.parameters())   # losers: zero gradient, no step
            assert np.isnan(s.loss[i]) and s.wins[i] == 0
    assert any(not torch.equal(a, b) for a, b in zip(d_before, disc.parameters()))
    assert sum(s.wins) == 8


def test_bf16_autocast_step_keeps_fp32_weights_and_tracks_the_fp32_step():
    torch.manual_seed(0)
    pair = [make(3) for _ in range(2)]
    pair[1][0].load_state_dict(pair[0][0].state_dict())
    pair[1][1].load_state_dict(pair[0][1].state_dict())
    xc, xt = torch.rand(8, 1, 12, 12), torch.rand(8, 1, 12, 12)
    stats = []
    for (bank, disc), amp in zip(pair, (None, torch.bfloat16)):
        opt_e = torch.optim.Adam(bank.parameters(), lr=1e-3)
        opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3)
        stats.append(icm.icm_step(bank, disc, opt_e, opt_d, xc, xt, "capacity", 4, 0.0, amp,
                                   Parallel.single(bank, disc)))
        assert all(p.dtype == torch.float32 for p in [*bank.parameters(), *disc.parameters()])
    assert sum(stats[1].wins) == 8 and np.isfinite(stats[1].d_loss)
    assert abs(stats[0].d_loss - stats[1].d_loss) < 0.05   # bf16 rounding, not a different computation


def test_loser_gets_exactly_zero_gradient_even_in_batched_form():
    bank, disc = make(3)
    bank.batched = True
    owner = torch.tensor([0, 0, 1, 1])
    y = bank.forward_assigned(torch.rand(4, 1, 12, 12), owner)
    torch.nn.functional.softplus(-disc(y)).sum().backward()
    assert all(float(p.grad.abs().sum()) == 0 for p in bank.experts[2].parameters())
    assert any(float(p.grad.abs().sum()) > 0 for p in bank.experts[0].parameters())


def test_pretraining_reaches_an_identity_and_stops_at_the_threshold():
    torch.manual_seed(0)
    bank = ExpertBank(2, 1, 8, False, "paper")
    x = torch.rand(64, 1, 8, 8)
    its = icm.pretrain_identity(list(bank.experts), x, 1e-2, 16, 0.01, 400, torch.Generator().manual_seed(0))
    assert its < 400
    with torch.no_grad():
        assert all(torch.nn.functional.mse_loss(e(x), x) < 0.02 for e in bank.experts)


def test_perturbed_copies_are_close_but_distinct():
    torch.manual_seed(0)
    src = ExpertBank(1, 1, 8, False, "paper").experts[0]
    bank = ExpertBank(3, 1, 8, False, "paper")
    icm.perturbed_copies(src, bank, 0.01, torch.Generator().manual_seed(0))
    w = [e.convs[1].weight for e in bank.experts]
    assert not torch.equal(w[0], w[1])
    assert torch.allclose(w[0], src.convs[1].weight, atol=0.05 * src.convs[1].weight.abs().max().item())


@pytest.mark.parametrize("extras", [{}, {"ema": 0.5, "hysteresis": 0.2, "r1_gamma": 1.0, "spectral_norm": True,
                                               "instance_noise": 0.1, "lr_specialized_experts": 0.5,
                                               "winner_fake_weight": 1.0}])
def test_training_is_deterministic_and_resumes_exactly(cfg, extras):
    tc = type(cfg.mnist.train)(**{**cfg.mnist.train.__dict__, "iterations": 6, "check_every": 3,
                                  "checkpoint_every": 3, "batch_size": 8, **extras})
    g = torch.Generator().manual_seed(0)
    xc, xt = torch.rand(40, 1, 12, 12, generator=g), torch.rand(40, 1, 12, 12, generator=g)
    mech = np.arange(40) % 2

    def fresh():
        bank, disc = make(3)
        if tc.spectral_norm:
            disc = Discriminator(1, 12, widths=(4, 8, 8), hidden=16, spectral_norm=True)
        return loop.new_state(bank, disc, tc, 0, Launch.single())

    a = loop.train(fresh(), xc, xt, xt, mech, 2, tc)
    b = loop.train(fresh(), xc, xt, xt, mech, 2, tc)
    saved = []
    c = loop.train(fresh(), xc, xt, xt, mech, 2, tc, on_checkpoint=lambda s: saved.append(
        __import__("copy").deepcopy(s.state_dict())) if s.iteration == 3 else None)
    resumed = fresh()
    resumed.load_state_dict(saved[0])
    assert resumed.iteration == 3
    d = loop.train(resumed, xc, xt, xt, mech, 2, tc)
    for other in (b, c, d):
        for p, q in zip(a.bank.parameters(), other.bank.parameters()):
            assert torch.equal(p, q)
        assert [v for _, v in a.curves["d_loss"]] == [v for _, v in other.curves["d_loss"]]
        for p, q in zip(a.eval_bank().parameters(), other.eval_bank().parameters()):
            assert torch.equal(p, q)
    if tc.ema:      # the evaluated weights are the average, not the last step's
        assert any(not torch.equal(p, q) for p, q in zip(a.bank.parameters(), a.eval_bank().parameters()))
    if tc.hysteresis:
        assert a.last_owner is not None and (a.last_owner >= 0).any()


def test_ema_averages_the_expert_weights(cfg):
    import dataclasses as dc

    bank, disc = make(2)
    state = loop.new_state(bank, disc, dc.replace(cfg.mnist.train, ema=0.75), 0, Launch.single())
    w = bank.experts[0].out.weight
    first = w.detach().clone()
    state.ema.update_parameters(bank)          # the first update copies
    with torch.no_grad():
        w.add_(1.0)
    state.ema.update_parameters(bank)
    assert torch.allclose(state.eval_bank().experts[0].out.weight, 0.75 * first + 0.25 * (first + 1.0))


def test_hog_splitting_copies_the_most_preferred_expert_into_the_least(cfg):
    import dataclasses as dc

    tc = dc.replace(cfg.mnist.train, reseed_every=2, reseed_below=0.25, reseed_above=1.5, reseed_perturb=0.0)
    bank, disc = make(3)
    state = loop.new_state(bank, disc, tc, 0, Launch.single())
    for p in bank.parameters():
        p.grad = torch.ones_like(p)
    state.opt_e.step()                                   # give every expert optimiser state
    loop.maybe_reseed(state, [8, 0, 2], tc, 1)           # odd iteration: only tracks preference
    assert any(not torch.equal(a, b) for a, b in zip(bank.experts[0].parameters(), bank.experts[1].parameters()))
    loop.maybe_reseed(state, [8, 0, 2], tc, 2)
    for a, b in zip(bank.experts[0].parameters(), bank.experts[1].parameters()):
        assert torch.equal(a, b)
        assert b not in state.opt_e.state and a in state.opt_e.state
    assert state.curves["reseeds"] == [(2, 1)]
    loop.maybe_reseed(state, [4, 3, 3], tc, 4)           # balanced enough: nothing happens
    assert state.curves["reseeds"] == [(2, 1)]


def test_learning_rate_decays_from_base_to_the_final_fraction():
    assert loop.lr_scale(1, 100, 0.1) == pytest.approx(1.0)
    assert loop.lr_scale(100, 100, 0.1) == pytest.approx(0.1)
    assert loop.lr_scale(50, 100, 1.0) == pytest.approx(1.0)
    values = [loop.lr_scale(i, 100, 0.1) for i in range(1, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("factors", [(0.1, 0.3), (1.0, 0.1), (1.0, 1.0)])
def test_learning_rates_drop_from_the_first_specialised_check_on(cfg, factors):
    import dataclasses as dc

    tc = dc.replace(cfg.mnist.train, iterations=4, check_every=2, checkpoint_every=1, batch_size=8,
                    lr_final_fraction=1.0, lr_specialized_experts=factors[0],
                    lr_specialized_discriminator=factors[1], winner_fake_weight=0.0)
    g = torch.Generator().manual_seed(0)
    xc, xt = torch.rand(16, 1, 12, 12, generator=g), torch.rand(16, 1, 12, 12, generator=g)
    bank, disc = make(3)
    state = loop.new_state(bank, disc, tc, 0, Launch.single())
    state.specialized_at = (0, 0.0)      # as if an earlier check had found the owners distinct and pure
    lrs = []                             # the lrs each of iterations 1-3 stepped with
    loop.train(state, xc, xt, xt, np.arange(16) % 2, 2, tc, on_checkpoint=lambda s: lrs.append(
        (s.opt_e.param_groups[0]["lr"], s.opt_d.param_groups[0]["lr"])))
    assert lrs[0] == lrs[1] == (tc.lr_experts, tc.lr_discriminator)   # the check after iteration 2 settles it
    assert lrs[2] == pytest.approx((tc.lr_experts * factors[0], tc.lr_discriminator * factors[1]))
    assert state.settled == (min(factors) < 1)


def test_winners_as_fakes_switch_on_at_the_first_specialised_check_only(cfg, monkeypatch):
    import dataclasses as dc

    tc = dc.replace(cfg.mnist.train, iterations=4, check_every=2, checkpoint_every=100, batch_size=8,
                    lr_final_fraction=1.0, lr_specialized_experts=1.0, lr_specialized_discriminator=1.0,
                    winner_fake_weight=2.0)
    g = torch.Generator().manual_seed(0)
    xc, xt = torch.rand(16, 1, 12, 12, generator=g), torch.rand(16, 1, 12, 12, generator=g)
    weights, step = [], icm.icm_step

    def recording(*args):
        weights.append(args[-1])
        return step(*args)
    monkeypatch.setattr(icm, "icm_step", recording)
    for specialised, expected in ((False, [0.0] * 4), (True, [0.0, 0.0, 2.0, 2.0])):
        weights.clear()
        bank, disc = make(3)
        state = loop.new_state(bank, disc, tc, 0, Launch.single())
        if specialised:
            state.specialized_at = (0, 0.0)   # as if an earlier check had found the owners distinct and pure
        loop.train(state, xc, xt, xt, np.arange(16) % 2, 2, tc)
        assert weights == expected and state.settled == specialised
        assert state.opt_d.param_groups[0]["lr"] == tc.lr_discriminator   # lr factors 1: the lrs stay


def test_winner_fake_weight_adds_the_winners_bce_to_d_loss_and_leaves_the_winners_alone():
    import torch.nn.functional as F

    xc, xt = torch.rand(8, 1, 12, 12), torch.rand(8, 1, 12, 12)

    def step(w):   # the step's stats, and the BCE of its winners' outputs as fakes under D
        bank, disc = make(3)
        opt_e, opt_d = torch.optim.SGD(bank.parameters(), lr=0.0), torch.optim.SGD(disc.parameters(), lr=0.0)
        s = icm.icm_step(bank, disc, opt_e, opt_d, xc, xt, "capacity", 3, 0.0, None,   # cap 3: 3 owners
                         Parallel.single(bank, disc), winner_fake_weight=w)
        with torch.no_grad():
            won = bank.forward_all(xt)[torch.arange(8), s.owner]
            return s, F.binary_cross_entropy_with_logits(disc(won), torch.zeros(8)).item()
    (off, bce), (on, _) = step(0.0), step(0.5)
    assert len(set(off.owner.tolist())) > 1
    assert on.d_loss == pytest.approx(off.d_loss + 0.5 * bce, rel=1e-5)
    assert on.owner.tolist() == off.owner.tolist()


def test_stability_reads_the_late_and_post_specialisation_purity():
    curve = [(25, 0.2), (50, 0.95), (75, 0.6), (100, 0.97), (125, 0.99), (150, 0.92), (175, 0.98), (200, 0.93)]
    got = loop.stability(curve, 50)
    assert got == {"purity_min_last_quarter": 0.93, "purity_min_after_specialized": 0.6}
    assert loop.stability(curve, None)["purity_min_after_specialized"] is None
    assert loop.stability([], None) == {"purity_min_last_quarter": None, "purity_min_after_specialized": None}


def test_instance_noise_reaches_d_but_not_the_choice_of_winners():
    """Noise on D's inputs changes D's loss (and so its update), while the winners are still picked
    from D's scores on the clean outputs: the same owners with or without noise."""
    g = torch.Generator().manual_seed(0)
    xc, xt = torch.rand(8, 1, 12, 12, generator=g), torch.rand(8, 1, 12, 12, generator=g)
    runs = []
    for std in (0.0, 0.0, 3.0):
        bank, disc = make(3)
        opt_e, opt_d = torch.optim.Adam(bank.parameters()), torch.optim.Adam(disc.parameters())
        runs.append(icm.icm_step(bank, disc, opt_e, opt_d, xc, xt, "capacity", 3, 0.0, None, Parallel.single(bank, disc),
                                 noise_std=std, generator=torch.Generator().manual_seed(1)))
    clean, again, noisy = runs
    assert clean.d_loss == again.d_loss and noisy.d_loss != clean.d_loss
    assert torch.equal(noisy.owner, clean.owner) and len(set(clean.owner.tolist())) > 1


def test_raw_fake_weight_adds_the_raw_inputs_bce_to_d_loss_and_leaves_the_winners_alone():
    import torch.nn.functional as F

    xc, xt = torch.rand(8, 1, 12, 12), torch.rand(8, 1, 12, 12)
    runs = []
    for w in (0.0, 2.0):
        bank, disc = make(3)
        with torch.no_grad():
            raw_bce = F.binary_cross_entropy_with_logits(disc(xt), torch.zeros(8)).item()
        opt_e, opt_d = torch.optim.SGD(bank.parameters(), lr=0.0), torch.optim.SGD(disc.parameters(), lr=0.0)
        runs.append((icm.icm_step(bank, disc, opt_e, opt_d, xc, xt, "argmax", 8, 0.0, None,
                                  Parallel.single(bank, disc), raw_fake_weight=w), raw_bce))
    (off, bce), (on, _) = runs
    assert on.d_loss == pytest.approx(off.d_loss + 2.0 * bce, rel=1e-5)
    assert on.owner.tolist() == off.owner.tolist()   # the winners are picked from the experts' outputs only


def test_identity_term_blind_to_offsets_charges_structure_but_not_a_global_cast():
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    cast = x + torch.tensor([0.2, 0.0, -0.2]).view(1, 3, 1, 1)
    assert icm.identity_term(cast, x, False) == pytest.approx(torch.full((4,), 0.4 / 3))
    assert icm.identity_term(cast, x, True) == pytest.approx(torch.zeros(4), abs=1e-6)
    moved = torch.roll(x, 2, dims=2)                                  # a shift: structure, not an offset
    assert (icm.identity_term(moved, x, True) > 0.1).all()
    assert icm.identity_term(moved, x, True) == pytest.approx(icm.identity_term(moved, x, False), rel=0.2)
