import pytest
import torch

from pipeline.models.experts import ExpertBank, use_batched


def twin_banks(n, channels=1):
    torch.manual_seed(0)
    loop = ExpertBank(n, channels, 8, False, "paper")
    batched = ExpertBank(n, channels, 8, True, "paper")
    batched.load_state_dict(loop.state_dict())
    # Distinct, non-trivial norm statistics per expert.
    for bank in (loop, batched):
        g = torch.Generator().manual_seed(1)
        for mod in bank.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
    return loop, batched


@pytest.mark.parametrize("frozen", [True, False])
@pytest.mark.parametrize("channels", [1, 3])
def test_batched_forward_all_matches_per_expert_modules(frozen, channels):
    loop, batched = twin_banks(4, channels)
    if frozen:
        loop.freeze_norm_stats()
        batched.freeze_norm_stats()
    x = torch.rand(6, channels, 12, 12)
    a, b = loop.forward_all(x), batched.forward_all(x)
    assert a.shape == (6, 4, channels, 12, 12)
    assert torch.allclose(a, b, atol=1e-5)
    for i, e in enumerate(loop.experts):
        assert torch.allclose(a[:, i], e(x), atol=1e-6)


def test_batched_forward_assigned_matches_and_gives_the_same_gradients():
    loop, batched = twin_banks(3)
    loop.freeze_norm_stats()
    batched.freeze_norm_stats()
    x = torch.rand(7, 1, 10, 10)
    owner = torch.tensor([2, 0, 2, 2, 1, 0, 2])
    ya, yb = loop.forward_assigned(x, owner), batched.forward_assigned(x, owner)
    assert torch.allclose(ya, yb, atol=1e-5)
    for i in range(7):  # each sample went through its own expert only
        assert torch.allclose(ya[i], loop.experts[owner[i]](x[i:i + 1])[0], atol=1e-6)
    (ya ** 2).sum().backward()
    (yb ** 2).sum().backward()
    for pa, pb in zip(loop.parameters(), batched.parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-4)


def test_forward_assigned_leaves_experts_without_samples_out_of_the_graph():
    loop, _ = twin_banks(3)
    loop.freeze_norm_stats()
    y = loop.forward_assigned(torch.rand(4, 1, 8, 8), torch.tensor([0, 0, 2, 2]))
    y.sum().backward()
    assert all(p.grad is None for p in loop.experts[1].parameters())
    assert all(p.grad is not None for p in loop.experts[0].parameters())


def test_auto_form_is_per_expert_on_cpu_and_batched_on_gpu():
    assert use_batched("auto", torch.device("cpu"), "paper") is False
    assert use_batched("auto", torch.device("cuda"), "paper") is True
    assert use_batched("true", torch.device("cpu"), "paper") is True
    assert use_batched("false", torch.device("cuda"), "paper") is False


def test_fast_elu_matches_torch_elu_in_value_and_gradient():
    from pipeline.models.experts import elu

    x = torch.linspace(-6, 6, 1001, requires_grad=True)
    y = elu(x)
    assert torch.allclose(y, torch.nn.functional.elu(x), atol=2e-7)
    (g,) = torch.autograd.grad((y * torch.cos(x)).sum(), x)
    (ref,) = torch.autograd.grad((torch.nn.functional.elu(x) * torch.cos(x)).sum(), x)
    assert torch.allclose(g, ref, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(elu(x.detach().clone()), torch.nn.functional.elu(x), atol=2e-7)


def test_frozen_expert_equals_conv_then_batchnorm():
    loop, _ = twin_banks(1)
    e = loop.experts[0].eval()
    x = torch.rand(5, 1, 9, 9)
    ref = x
    for conv, norm in zip(e.convs, e.norms):
        ref = torch.nn.functional.elu(norm(conv(ref)))
    assert torch.allclose(e(x), torch.sigmoid(e.out(ref)), atol=1e-6)


@pytest.mark.parametrize("arch,batched", [("paper", False), ("paper", True), ("unet", False)])
def test_residual_experts_start_as_the_exact_identity_and_learn(arch, batched):
    torch.manual_seed(0)
    bank = ExpertBank(3, 3, 8, batched, arch, residual=True)
    bank.freeze_norm_stats()
    x = torch.rand(4, 3, 16, 16)
    assert torch.equal(bank.forward_all(x), x.unsqueeze(1).expand(4, 3, 3, 16, 16))
    owner = torch.tensor([0, 1, 2, 0])
    y = bank.forward_assigned(x, owner)
    assert torch.equal(y, x)
    (y - 0.5).pow(2).sum().backward()          # the zero-initialised last conv still gets a gradient
    assert all(e.out.weight.grad is not None and e.out.weight.grad.abs().sum() > 0 for e in bank.experts[:3])


def test_spectral_norm_bounds_every_discriminator_layer():
    from pipeline.models.discriminator import Discriminator

    torch.manual_seed(0)
    disc = Discriminator(3, 16, spectral_norm=True)
    for _ in range(30):                          # power iterations run in training-mode forwards
        disc(torch.rand(8, 3, 16, 16))
    layers = [*disc.convs, disc.fc, disc.head]
    for layer in layers:
        w = layer.weight.detach().flatten(1)
        assert torch.linalg.matrix_norm(w, ord=2) == pytest.approx(1.0, rel=0.05)
    plain = Discriminator(3, 16)                 # without it the default init is far from norm 1
    norms = [float(torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2))
             for m in (*plain.convs, plain.fc, plain.head)]
    assert max(abs(v - 1) for v in norms) > 0.3, norms
