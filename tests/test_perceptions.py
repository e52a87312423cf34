"""The perceptions: shapes, receptive fields, circular wrap, gradients, training, the fixed kernels' values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ncacli.engine import NCA, ModelConfig
from ncacli.engine.learned_perception import (
    AttentionPerception,
    CombinedPerception,
    ConvPerception,
    DeformablePerception,
    ResidualPerception,
    ScaledConvPerception,
    describe,
)
from ncacli.engine.perception import (
    IDENTITY,
    PERCEPTIONS,
    FixedKernelPerception,
    Sobel,
    Sobel5,
    SobelDiagonal,
    SobelLaplacian,
)

FIXED = {"sobel5": Sobel5, "sobel_diagonal": SobelDiagonal}
LEARNED = {
    "conv": ConvPerception,
    "conv_scaled": ScaledConvPerception,
    "combined": CombinedPerception,
    "attention": AttentionPerception,
    "deformable": DeformablePerception,
    "residual": ResidualPerception,
}
ALL = {**FIXED, **LEARNED}
NAMES = sorted(ALL)
PADDINGS = ["zeros", "circular"]


def build(name: str, channels: int, padding: str = "zeros", seed: int = 0, scale: float = 0.0) -> torch.nn.Module:
    """The perception under ``manual_seed(seed)``; ``scale > 0`` redraws every parameter from N(0, scale²)
    (generic weights: offsets away from zero, no zero kernel taps)."""
    torch.manual_seed(seed)
    perception = ALL[name](channels, padding=padding)
    if scale:
        with torch.no_grad():
            for p in perception.parameters():
                p.normal_(0, scale)
    return perception.to(memory_format=torch.channels_last)


def state(b: int, c: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g).contiguous(memory_format=torch.channels_last)


def changed(perception: torch.nn.Module, x: torch.Tensor, row: int, col: int) -> torch.Tensor:
    """``(H, W)`` bool: the cells whose features change when cell ``(row, col)`` of ``x`` changes."""
    with torch.no_grad():
        before = perception(x)
        poked = x.clone()
        poked[:, :, row, col] += 1.0
        after = perception(poked.contiguous(memory_format=torch.channels_last))
    return ((after - before).abs().amax(dim=(0, 1)) > 1e-6).cpu()


@pytest.fixture
def registered():
    """Every built-in perception, as its entry point registers it."""
    yield


def test_entry_points_register_the_builtin_classes():
    for name in NAMES:
        assert PERCEPTIONS[name] is ALL[name], name


# --- the contract, for every perception ---------------------------------------------------------------


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("name", NAMES)
def test_shape_finite_and_batch_independent(name, padding):
    perception = build(name, 6, padding)
    x = state(3, 6, 7, 11)
    y = perception(x)
    k = perception.features_per_channel
    assert isinstance(k, int) and k >= 3
    assert y.shape == (3, 6 * k, 7, 11) and y.dtype == torch.float32
    assert torch.isfinite(y).all()
    one = perception(x[1:2].contiguous(memory_format=torch.channels_last))
    assert torch.allclose(one, y[1:2], atol=1e-5)
    plain = perception(x.contiguous())  # NCHW input gives the same features
    assert torch.allclose(plain, y, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_constructed_from_channels_and_padding_alone_and_repeatable(name):
    a, b = build(name, 5, "circular", seed=3), build(name, 5, "circular", seed=3)
    x = state(2, 5, 6, 6)
    assert torch.equal(a(x), b(x))
    assert isinstance(ALL[name].receptive_field, int)
    assert describe(a)["receptive_field"] == a.receptive_field


@pytest.mark.parametrize("name", NAMES)
def test_receptive_field_is_the_extent_a_cell_sees(name):
    perception = build(name, 4, "zeros", scale=0.0 if name in FIXED else 0.5)
    x = state(1, 4, 21, 23)
    rows, cols = torch.nonzero(changed(perception, x, 10, 11), as_tuple=True)
    rf, half = perception.receptive_field, perception.receptive_field // 2
    assert (int(rows.min()), int(rows.max())) == (10 - half, 10 + half), f"rows seen: {rf} claimed"
    assert (int(cols.min()), int(cols.max())) == (11 - half, 11 + half), f"columns seen: {rf} claimed"


@pytest.mark.parametrize("name", NAMES)
def test_circular_padding_wraps_round_and_zeros_does_not(name):
    scale = 0.0 if name in FIXED else 0.5
    x = state(1, 4, 13, 16)
    wrapped = changed(build(name, 4, "circular", scale=scale), x, 0, 0)
    assert wrapped[-1, -1] and wrapped[0, -1] and wrapped[-1, 0]  # the opposite edges and corner
    walled = changed(build(name, 4, "zeros", scale=scale), x, 0, 0)
    assert walled[0, 0] and not walled[-1].any() and not walled[:, -1].any()


@pytest.mark.parametrize("name", NAMES)
def test_circular_perception_commutes_with_shifting_the_torus(name):
    perception = build(name, 4, "circular", scale=0.0 if name in FIXED else 0.5)
    x = state(2, 4, 9, 12)
    shifted = torch.roll(x, shifts=(4, -5), dims=(2, 3)).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = torch.roll(perception(x), shifts=(4, -5), dims=(2, 3))
        assert torch.allclose(perception(shifted), expected, atol=1e-5)


@pytest.mark.parametrize("name", sorted(FIXED))
def test_fixed_perceptions_have_no_parameters(name):
    perception = build(name, 16)
    assert describe(perception)["parameters"] == 0
    assert perception.state_dict() == {}  # the kernels are rebuilt, not saved


@pytest.mark.parametrize("name", sorted(LEARNED))
def test_gradients_reach_every_parameter(name):
    perception = build(name, 5, "zeros")  # as initialised (the deformable offsets start at zero)
    x = state(2, 5, 8, 9)
    g = torch.Generator().manual_seed(7)
    y = perception(x)
    (y * torch.randn(y.shape, generator=g)).sum().backward()
    for pname, p in perception.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname
    assert describe(perception)["parameters"] == sum(p.numel() for p in perception.parameters()) > 0


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("name", NAMES)
def test_nca_trains_and_reloads(name, padding, registered):
    config = ModelConfig(perception=name, channels=8, hidden=16, fire_rate=1.0, padding_mode=padding)
    torch.manual_seed(0)
    model = NCA(config)
    seed = torch.zeros(1, 8, 12, 12)
    seed[:, 3:, 5:7, 5:7] = 1.0
    target = torch.zeros(1, 4, 12, 12)
    target[:, :, 3:9, 3:9] = torch.tensor([0.9, 0.3, 0.1, 1.0]).view(1, 4, 1, 1)
    assert torch.equal(model.rollout(seed, 8), seed.contiguous(memory_format=torch.channels_last))  # starts still
    start = {k: v.clone() for k, v in model.perceive.state_dict().items()}
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        optimiser.zero_grad()
        loss = F.mse_loss(model.rollout(seed, 8)[:, :4], target)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.75 * losses[0], losses
    assert set(start) == set(model.perceive.state_dict())  # the fixed kernels are not in the model file
    for key, before in start.items():  # the learned perception trains with the update rule
        assert not torch.equal(before, model.perceive.state_dict()[key]), key

    torch.manual_seed(99)
    fresh = NCA(config)
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh.rollout(seed, 8), model.rollout(seed, 8))


# --- the fixed kernels ---------------------------------------------------------------------------------


def test_existing_3x3_perceptions_are_unchanged():
    for cls, kernels in ((Sobel, Sobel.kernels), (SobelLaplacian, SobelLaplacian.kernels)):
        perception = cls(4)
        expected = torch.tensor(kernels).repeat(4, 1, 1).unsqueeze(1)
        assert perception.weight.shape == (4 * len(kernels), 1, 3, 3)
        assert torch.equal(perception.weight, expected) and cls.receptive_field == 3
        x = state(2, 4, 6, 7)
        assert torch.equal(perception(x), F.conv2d(x, expected, padding=1, groups=4))
        wrapped = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), expected, groups=4)
        assert torch.equal(cls(4, padding="circular")(x), wrapped)


def test_fixed_kernels_of_mixed_odd_sizes_are_centred():
    class Ring(FixedKernelPerception):
        kernels = [IDENTITY, [[1.0] * 5] + [[1.0, 0.0, 0.0, 0.0, 1.0]] * 3 + [[1.0] * 5]]

    assert Ring.receptive_field == 5
    ring = Ring(2)
    assert ring.weight.shape == (4, 1, 5, 5)
    assert ring.weight[0, 0, 2, 2] == 1 and ring.weight[0].sum() == 1  # the 3×3 identity, centred
    with pytest.raises(ValueError, match="odd side"):

        class Even(FixedKernelPerception):
            kernels = [[[1.0, 0.0], [0.0, 1.0]]]

        Even(1)


def test_sobel5_is_an_antisymmetric_unit_gain_derivative():
    weight = Sobel5(1).weight[:, 0]  # (3, 5, 5): identity, x, y
    kx, ky = weight[1], weight[2]
    assert torch.equal(kx.flip(-1), -kx) and torch.equal(ky, kx.T)
    assert abs(float(kx.sum())) < 1e-7
    assert float(kx.abs().sum()) <= 1.0  # bounded like the 3×3 / 8 kernels (whose absolute values sum to 1)
    assert weight[0, 2, 2] == 1 and weight[0].abs().sum() == 1


@pytest.mark.parametrize("padding", PADDINGS)
def test_sobel5_reads_a_ramp_like_the_3x3_sobel(padding):
    ramp = torch.arange(14.0).view(1, 1, 1, 14).expand(1, 2, 12, 14).contiguous()
    small, large = Sobel(2, padding)(ramp), Sobel5(2, padding)(ramp)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    for f in (1, 4):  # channel 0's and channel 1's x-gradient
        assert torch.allclose(large[inner][:, f], torch.ones(1, 8, 10))
        assert torch.allclose(large[inner][:, f], small[inner][:, f])
    for f in (2, 5):  # no y-gradient
        assert torch.allclose(large[inner][:, f], torch.zeros(1, 8, 10), atol=1e-6)
    down = ramp.transpose(2, 3).contiguous()  # a vertical ramp
    assert torch.allclose(Sobel5(2, padding)(down)[:, 2, 2:-2, 2:-2], torch.ones(1, 10, 8), atol=1e-6)


def test_diagonal_operators_prefer_their_own_diagonal():
    size = 12
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    rising = (xx - yy > 0).float()  # brighter towards the upper right: a 45° edge
    falling = (xx + yy > size - 1).float()  # brighter towards the lower right: a 135° edge
    level = (yy >= size // 2).float()  # a horizontal edge
    perception = SobelDiagonal(1)
    assert perception.features_per_channel == 5 and SobelDiagonal.receptive_field == 3

    def peak(image: torch.Tensor, feature: int) -> float:
        out = perception(image.view(1, 1, size, size))[0, feature, 1:-1, 1:-1]
        return float(out.abs().max())

    assert peak(rising, 3) > peak(level, 3) and peak(rising, 3) > peak(falling, 3)
    assert peak(falling, 4) > peak(level, 4) and peak(falling, 4) > peak(rising, 4)
    assert peak(rising, 3) > peak(rising, 1)  # and more than the x-gradient does on it
    assert torch.equal(perception(rising.view(1, 1, size, size))[:, :3], Sobel(1)(rising.view(1, 1, size, size)))
    ramp = (xx + yy).float().view(1, 1, size, size)  # the 45° operator is blind to a 135° ramp
    assert torch.allclose(perception(ramp)[0, 3, 1:-1, 1:-1], torch.zeros(size - 2, size - 2))


# --- the learned perceptions' starting points ----------------------------------------------------------


@pytest.mark.parametrize("padding", PADDINGS)
def test_scaled_conv_starts_as_sobel_and_scales(padding):
    x = state(2, 4, 7, 9)
    scaled = ScaledConvPerception(4, padding)
    assert torch.allclose(scaled(x), Sobel(4, padding)(x), atol=1e-6)
    assert describe(scaled)["parameters"] == 4 * 3 * 9 + 1
    with torch.no_grad():
        scaled.scale.fill_(0.5)
    assert torch.allclose(scaled(x), 0.5 * Sobel(4, padding)(x), atol=1e-6)
    assert ScaledConvPerception(4, per_feature=True).scale.shape == (12,)


@pytest.mark.parametrize("padding", PADDINGS)
def test_deformable_starts_as_sobel_and_laplacian(padding):
    x = state(2, 4, 7, 9)
    deformable = DeformablePerception(4, padding)
    fixed = SobelLaplacian(4, padding)(x).view(2, 4, 4, 7, 9)[:, :, 1:].reshape(2, 12, 7, 9)
    out = deformable(x)
    assert torch.equal(out[:, :4], x)
    assert torch.allclose(out[:, 4:], fixed, atol=1e-5)


def test_offsets_are_bounded():
    deformable = build("deformable", 4, scale=5.0)
    offsets = deformable.offsets(state(1, 4, 8, 8) * 10)
    assert offsets.abs().max() <= deformable.max_offset


def test_combined_keeps_the_state_once_and_reaches_nine():
    torch.manual_seed(0)
    combined = CombinedPerception(3)
    assert combined.features_per_channel == 7 and combined.receptive_field == 9
    x = state(1, 3, 10, 10)
    out = combined(x)
    assert torch.equal(out[:, :3], x)
    first, second = combined.parts
    assert torch.equal(out[:, 3:12], first.learned(x)) and torch.equal(out[:, 12:], second.learned(x))
    assert (first.receptive_field, second.receptive_field) == (3, 9)
    mixed = CombinedPerception(3, parts=[{"kind": "attention"}, {"kind": "residual", "features": 2}])
    assert mixed.features_per_channel == 1 + 3 + 2 and mixed.receptive_field == 5


def test_conv_options_set_the_receptive_field_and_features():
    assert ConvPerception(4, kernel_size=5, dilation=2).receptive_field == 9
    full = ConvPerception(4, mode="full", features=2)
    assert full.features_per_channel == 3 and describe(full)["parameters"] == 4 * 8 * 9 + 8
    separable = ConvPerception(4, mode="separable")
    assert describe(separable)["parameters"] == 12 * 9 + 12 * 12 + 12
    assert ResidualPerception(4, kernel_size=5).receptive_field == 9
    assert AttentionPerception(4, kernel_size=5).receptive_field == 5
    assert DeformablePerception(4, max_offset=2.5).receptive_field == 9
    with pytest.raises(ValueError, match="padding"):
        ConvPerception(4, padding="reflect")
    with pytest.raises(ValueError, match="odd"):
        ConvPerception(4, kernel_size=4)


def test_attention_weights_are_a_distribution_over_the_neighbours():
    attention = build("attention", 4, "zeros")
    with torch.no_grad():
        attention.value.weight.zero_()
        attention.value.bias.fill_(2.0)  # every value is 2, padded zero states included
        out = attention(state(1, 4, 6, 6))
    assert torch.allclose(out[:, 4:], torch.full((1, 12, 6, 6), 2.0), atol=1e-5)


def test_describe_at_sixteen_channels():
    table = {name: describe(build(name, 16)) for name in NAMES}
    assert table["sobel5"] == {"receptive_field": 5, "parameters": 0, "features": 48, "features_per_channel": 3}
    assert table["sobel_diagonal"] == {"receptive_field": 3, "parameters": 0, "features": 80, "features_per_channel": 5}
    conv = {"receptive_field": 3, "parameters": 16 * 3 * 9 + 48, "features": 64, "features_per_channel": 4}
    assert table["conv"] == conv
    review = ConvPerception(21, mode="full", out_features=80, activation="leaky_relu", keep_state=False)
    assert describe(review) == {
        "receptive_field": 3, "parameters": 21 * 80 * 9 + 80, "features": 80, "features_per_channel": None,
    }  # fmt: skip
    assert table["combined"]["parameters"] == (16 * 3 * 9 + 48) + (16 * 3 * 25 + 48)
    assert table["combined"]["receptive_field"] == 9


def test_the_scale_factor_can_leave_the_identity_alone():
    """The higher-resolution NCA study scales the gradient features only (``scale_identity=False``); the default
    scales every feature, as files written before the option did."""
    x = torch.randn(2, 4, 7, 9)
    study, every = ScaledConvPerception(4, scale_identity=False), ScaledConvPerception(4)
    with torch.no_grad():
        for p in (study, every):
            p.scale.fill_(3.0)
    sobel = Sobel(4)(x)
    assert torch.allclose(study(x)[:, 0::3], x) and torch.allclose(study(x)[:, 1::3], 3 * sobel[:, 1::3], atol=1e-6)
    assert torch.allclose(every(x), 3 * sobel, atol=1e-6)
