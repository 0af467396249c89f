import pytest
import torch

from pipeline import mechanisms as m


def strength(seed=0):
    return m.Strength(shift=1, noise_std=0.5, generator=torch.Generator().manual_seed(seed))


def tiny():
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 1.0  # one bright pixel in the centre
    return x


@pytest.mark.parametrize("name,pos", [
    ("up", (0, 1)), ("down", (2, 1)), ("left", (1, 0)), ("right", (1, 2)),
    ("up_left", (0, 0)), ("up_right", (0, 2)), ("down_left", (2, 0)), ("down_right", (2, 2)),
])
def test_translation_moves_the_pixel_and_fills_with_zero(name, pos):
    y = m.MECHANISMS[name](tiny(), strength())
    expected = torch.zeros(1, 1, 3, 3)
    expected[0, 0, pos[0], pos[1]] = 1.0
    assert torch.equal(y, expected)


def test_translation_drops_content_pushed_off_the_edge():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = m.translate(x, 0, 2)
    assert torch.equal(y[0, 0, :, :2], torch.zeros(4, 2))
    assert torch.equal(y[0, 0, :, 2:], x[0, 0, :, :2])


def test_invert_is_one_minus_x():
    x = torch.tensor([[[[0.0, 0.25], [0.5, 1.0]]]])
    assert torch.equal(m.MECHANISMS["invert"](x, strength()), torch.tensor([[[[1.0, 0.75], [0.5, 0.0]]]]))


def test_noise_is_gaussian_with_the_given_std_then_clipped():
    x = torch.full((1, 1, 200, 200), 0.5)
    y = m.MECHANISMS["noise"](x, strength())
    assert y.min() >= 0 and y.max() <= 1
    assert 0.0 in y and 1.0 in y                      # clipping happened (std 0.5 around 0.5)
    raw = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)) * 0.5
    assert torch.allclose(y, (0.5 + raw).clamp(0, 1))  # exactly x + N(0, std^2), clipped


def test_noise_is_reproducible_from_the_generator():
    x = torch.rand(2, 1, 5, 5)
    assert torch.equal(m.MECHANISMS["noise"](x, strength(3)), m.MECHANISMS["noise"](x, strength(3)))


def test_apply_routes_each_image_to_its_mechanism():
    x = tiny().repeat(3, 1, 1, 1)
    y = m.apply(("up", "invert", "right"), x, torch.tensor([2, 0, 1]), strength())
    assert torch.equal(y[0], m.translate(x[:1], 0, 1)[0])
    assert torch.equal(y[1], m.translate(x[:1], -1, 0)[0])
    assert torch.equal(y[2], 1 - x[2])


FACE = m.FaceStrength(shift=1, cast=0.2, brightness=-0.1, contrast=0.5, band=0.25, blur=0.1)


def rgb():
    """A 3x4x4 image: a bright pixel at (0, 0) in every channel on mid-grey."""
    x = torch.full((1, 3, 4, 4), 0.5)
    x[..., 0, 0] = 1.0
    return x


def test_face_mechanisms_exact_effects():
    x = rgb()
    f = m.FACE_MECHANISMS
    assert torch.equal(f["hflip"](x, FACE)[..., 0, 3], x[..., 0, 0])
    cast = f["colour_cast"](x, FACE)
    assert torch.allclose(cast[0, :, 1, 1], torch.tensor([0.7, 0.5, 0.3]))
    assert cast[0, 0, 0, 0] == 1.0                                   # clipped at 1
    bc = f["brightness_contrast"](x, FACE)
    assert torch.allclose(bc[0, :, 1, 1], torch.full((3,), 0.4)) and torch.allclose(bc[0, :, 0, 0], torch.full((3,), 0.65))
    band = f["occlusion"](x, FACE)                                   # 1 row centred at 40% of 4 rows: row 1
    assert band[..., 1, :].abs().sum() == 0 and torch.equal(band[..., [0, 2, 3], :], x[..., [0, 2, 3], :])
    moved = f["translate"](x, FACE)
    assert moved[..., 1, 1].eq(1.0).all() and moved[..., 0, :].eq(0).all() and moved[..., :, 0].eq(0).all()


def test_blur_keeps_flat_images_and_spreads_a_peak():
    flat = torch.full((1, 3, 8, 8), 0.3)
    assert torch.allclose(m.gaussian_blur(flat, 1.0), flat)
    peak = torch.zeros(1, 3, 8, 8)
    peak[..., 4, 4] = 1.0
    y = m.gaussian_blur(peak, 1.0)
    assert y[..., 4, 4].max() < 0.2 and y[..., 4, 5].min() > 0.05


def test_identifiable_face_mechanisms_exact_effects():
    x = rgb()
    f = m.FACE_MECHANISMS
    up, down = f["shift_up"](x, FACE), f["shift_down"](x, FACE)
    assert torch.equal(up[..., :3, :], x[..., 1:, :]) and up[..., 3, :].eq(0).all()   # rows move up, bottom zero
    assert torch.equal(down[..., 1:, :], x[..., :3, :]) and down[..., 0, :].eq(0).all()
    left, right = f["shift_left"](x, FACE), f["shift_right"](x, FACE)
    assert torch.equal(left[..., :, :3], x[..., :, 1:]) and left[..., :, 3].eq(0).all()
    assert torch.equal(right[..., :, 1:], x[..., :, :3]) and right[..., :, 0].eq(0).all()
    warm, cool = f["warm_cast"](x, FACE), f["cool_cast"](x, FACE)
    assert torch.allclose(warm[0, :, 1, 1], torch.tensor([0.7, 0.5, 0.3]))
    assert torch.allclose(cool[0, :, 1, 1], torch.tensor([0.3, 0.5, 0.7]))
    assert warm[0, 0, 0, 0] == 1.0 and cool[0, 2, 0, 0] == 1.0          # clipped at 1
    bright, dark = f["brighten"](x, FACE), f["darken"](x, FACE)          # |brightness| = 0.1 either way
    assert torch.allclose(bright[0, :, 1, 1], torch.full((3,), 0.6)) and bright[0, 0, 0, 0] == 1.0
    assert torch.allclose(dark[0, :, 1, 1], torch.full((3,), 0.4)) and torch.allclose(dark[0, :, 0, 0], torch.full((3,), 0.9))


def test_face_inverses_undo_all_but_what_was_destroyed():
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0)) * 0.6 + 0.2   # no clipping
    strong = m.FaceStrength(shift=1, cast=0.1, brightness=-0.1, contrast=0.5, band=0.25, blur=0.1)
    for name in ("warm_cast", "cool_cast", "brighten", "darken", "hflip", "colour_cast", "brightness_contrast"):
        back = m.face_inverse(name, m.FACE_MECHANISMS[name](x, strong), strong)
        assert torch.allclose(back, x, atol=1e-6), name
    # shift_up pushes the top row out, and so on: the inverse restores everything else
    inner = {"shift_up": (slice(1, 6), slice(None)), "shift_down": (slice(0, 5), slice(None)),
             "shift_left": (slice(None), slice(1, 6)), "shift_right": (slice(None), slice(0, 5)),
             "translate": (slice(0, 5), slice(0, 5))}
    for name, (rows, cols) in inner.items():     # exact away from the border the shift destroyed
        back = m.face_inverse(name, m.FACE_MECHANISMS[name](x, strong), strong)
        assert torch.equal(back[..., rows, cols], x[..., rows, cols]), name
        assert not torch.equal(back, x), name
    assert m.face_inverse("occlusion", x, strong) is None and m.face_inverse("blur", x, strong) is None
