"""The engine: perception, update, masking, rollout, seeds, damage, pool."""

from __future__ import annotations

import math

import pytest
import torch

from ncacli.engine import NCA, PERCEPTIONS, ModelConfig, SamplePool, apply_damage, damage_mask, make_seed
from ncacli.engine.seeds import seed_position_for


def randomised(config: ModelConfig, seed: int = 0) -> NCA:
    torch.manual_seed(seed)
    model = NCA(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model


def test_distill_configuration_has_8336_parameters():
    assert NCA(ModelConfig()).parameter_count() == 8336


def test_untrained_model_keeps_the_seed():
    model = NCA(ModelConfig())
    seed = make_seed(2, 16, 20, 20)
    out = model.rollout(seed, 10, torch.Generator().manual_seed(0))
    assert torch.equal(out, seed)


def test_sobel_sees_a_horizontal_ramp():
    model = NCA(ModelConfig())
    x = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 16, 8, 8).contiguous()
    features = model.perceive(x)  # per channel: identity, d/dx, d/dy
    assert torch.allclose(features[0, 1, 4, 4], torch.tensor(1.0))  # (1+2+1)·(+1 -(-1))/8 = 1 per cell
    assert torch.allclose(features[0, 2, 4, 4], torch.tensor(0.0))
    assert torch.allclose(features[0, 0], x[0, 0])


@pytest.mark.parametrize("name", sorted(PERCEPTIONS))
@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
def test_every_registered_perception_steps_and_trains(name, padding_mode):
    model = randomised(ModelConfig(perception=name, hidden=16, padding_mode=padding_mode))
    x = make_seed(2, 16, 12, 12)
    out = model.rollout(x, 6, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.isfinite(out).all()
    loss = (out[:, :4] ** 2).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.perceive(x).shape[1] == 16 * model.perceive.features_per_channel


def test_rollout_is_repeatable_from_the_generator_and_varies_with_it():
    model = randomised(ModelConfig(hidden=16, alive_masking=False))
    seed = make_seed(1, 16, 16, 16)
    a = model.rollout(seed, 12, torch.Generator().manual_seed(3))
    b = model.rollout(seed, 12, torch.Generator().manual_seed(3))
    c = model.rollout(seed, 12, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_fire_rate_one_updates_every_cell_the_same_way():
    model = randomised(ModelConfig(hidden=16, fire_rate=1.0, alive_masking=False))
    x = torch.zeros(1, 16, 8, 8)
    out = model(x)
    # without masking and with a constant input every cell gets the same update
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out))
    assert out.abs().sum() > 0


def test_alive_masking_kills_cells_far_from_life():
    model = NCA(ModelConfig())
    x = torch.zeros(1, 16, 9, 9)
    x[0, 5, 0, 0] = 1.0  # a hidden value with no alpha anywhere near it
    x[0, 3:, 4, 4] = 1.0  # a live seed
    out = model(x)
    assert out[0, 5, 0, 0] == 0 and out[0, 3, 4, 4] == 1


def test_circular_padding_wraps_the_neighbourhood():
    x = torch.zeros(1, 16, 8, 8)
    x[0, 3, 4, 0] = 1.0  # alive at the left edge
    wrap, zeros = NCA(ModelConfig(padding_mode="circular")), NCA(ModelConfig())
    assert wrap.alive(x)[0, 0, 4, 7] and not zeros.alive(x)[0, 0, 4, 7]
    assert wrap.perceive(x)[0, 3 * 3 + 1, 4, 7] != 0  # the x-gradient of alpha seen across the edge


def test_seed_positions_and_auto_seed():
    seed = make_seed(1, 16, 10, 20, positions=[(0.5, 0.5), (0.0, 0.0)])
    assert seed[0, 3:, 5, 10].eq(1).all() and seed[0, 3:, 0, 0].eq(1).all() and seed[0, :3].eq(0).all()
    target = torch.zeros(4, 11, 11)
    assert seed_position_for(torch.ones(4, 11, 11)) == (5.5 / 11, 5.5 / 11)
    target[3, 2, 8] = 1.0  # the only opaque cell
    assert seed_position_for(target) == (8.5 / 11, 2.5 / 11)


def test_damage_shapes():
    circle = damage_mask(100, 100, "circle", (0.5, 0.5), 0.2)
    assert abs(circle.sum().item() - math.pi * 20**2) < 40
    assert damage_mask(10, 10, "left")[0, 0, :, :5].all() and not damage_mask(10, 10, "left")[0, 0, :, 5:].any()
    assert damage_mask(10, 10, "top")[0, 0, :5].all() and not damage_mask(10, 10, "top")[0, 0, 5:].any()
    assert damage_mask(10, 10, "square", (0.5, 0.5), 0.2).sum() == 16
    state = torch.ones(2, 16, 10, 10)
    assert apply_damage(state, damage_mask(10, 10, "right"))[:, :, :, 5:].eq(0).all()
    with pytest.raises(ValueError):
        damage_mask(10, 10, "triangle")


def test_training_cuts_distills_by_default_or_centred_on_living_cells():
    from ncacli.engine import living_cells, random_circles

    g = torch.Generator().manual_seed(0)
    cuts = random_circles(2000, 40, 40, g)
    area = cuts.flatten(1).sum(1).float() / (math.pi * 40**2)  # r² as a fraction of the width
    assert 0.05**2 * 0.5 < area.min() and area.max() < 0.2**2 * 1.3  # radii in [0.05, 0.2]
    ys, xs = torch.meshgrid(torch.arange(40), torch.arange(40), indexing="ij")
    cx = (cuts[:, 0] * (xs + 0.5)).flatten(1).sum(1) / cuts.flatten(1).sum(1) / 40
    assert 0.24 < cx.min() and cx.max() < 0.76  # centres in the middle half

    alive = torch.zeros(3, 20, 30, dtype=torch.bool)
    alive[0, 2, 27] = True  # one living cell: the centre is that cell's
    alive[1, 10:, :5] = True
    centres = living_cells(alive, g)
    assert centres[0].tolist() == pytest.approx([27.5 / 30, 2.5 / 20])
    assert centres[2].tolist() == [0.5, 0.5]  # none alive: the middle
    x, y = (centres[1] * torch.tensor([30, 20])).floor().long().tolist()
    assert alive[1, y, x]
    fixed = random_circles(3, 20, 30, g, radius=(0.2, 0.2), alive=alive)
    assert fixed[0, 0, 2, 27] and fixed[2, 0, 10, 15]
    assert fixed[2].sum().item() == pytest.approx(math.pi * 6**2, abs=6)  # radius 0.2 of 30 cells, whole


def test_pool_samples_distinct_and_commits():
    pool = SamplePool(make_seed(1, 16, 4, 4), 10)
    idx, batch = pool.sample(4, torch.Generator().manual_seed(0))
    assert len(set(idx.tolist())) == 4
    pool.commit(idx, torch.full_like(batch, 2.0))
    assert pool.states[idx].eq(2).all() and (pool.states.eq(2).all(dim=(1, 2, 3)).sum() == 4)


def _rollout_grads(model, seed_state, **options):
    model.zero_grad()
    g = torch.Generator()
    g.manual_seed(3)
    out = model.rollout(seed_state, 24, g, **options)
    out[:, :4].pow(2).mean().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()], g.get_state()


def _changing_model():
    """A model whose updates are not zero yet (a trained one's would not be), and a seed ``(2, 16, 20, 20)``."""
    torch.manual_seed(0)
    model = NCA(ModelConfig(hidden=32))
    torch.nn.init.normal_(model.update.net[-1].weight, std=0.05)
    return model, make_seed(2, 16, 20, 20)


def test_checkpointed_rollout_gives_the_same_states_gradients_and_generator():
    model, seed = _changing_model()
    plain = _rollout_grads(model, seed)
    for options in ({"checkpoint": 5}, {"checkpoint": 24}, {"checkpoint": 1}):
        out, grads, state = _rollout_grads(model, seed, **options)
        assert torch.equal(out, plain[0]) and torch.equal(state, plain[2]), options
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, plain[1], strict=True)), options
    with pytest.raises(ValueError, match="observed"):
        model.rollout(seed, 4, checkpoint=2, observe=lambda i, x: None)


def test_truncated_backprop_keeps_the_states_and_only_the_last_steps_gradients():
    model, seed = _changing_model()
    plain = _rollout_grads(model, seed)
    out, grads, _ = _rollout_grads(model, seed, truncate=8)
    # The first 16 steps run without a graph, where the active engine turns to the dense step at a smaller share
    # of active cells (DENSE_INFERENCE) than with one: the same states computed another way, so up to rounding.
    assert torch.allclose(out, plain[0], rtol=0, atol=1e-5)
    assert not all(torch.allclose(a, b) for a, b in zip(grads, plain[1], strict=True))
    both = _rollout_grads(model, seed, truncate=8, checkpoint=3)
    assert torch.equal(both[0], out)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(both[1], grads, strict=True))
    # the first 16 steps are outside the graph: the gradient equals that of 8 steps from their result
    g = torch.Generator()
    g.manual_seed(3)
    with torch.no_grad():
        middle = model.rollout(seed, 16, g)
    model.zero_grad()
    model.rollout(middle, 8, g)[:, :4].pow(2).mean().backward()
    assert all(torch.allclose(p.grad, b, atol=1e-6) for p, b in zip(model.parameters(), grads, strict=True))


def test_residual_update_trains_and_starts_as_no_change():
    torch.manual_seed(0)
    model = NCA(ModelConfig(update="residual", hidden=24, depth=3))
    assert len(model.update.blocks) == 2
    x = make_seed(2, 16, 12, 12)
    assert torch.equal(model(x, None), x)  # zero-initialised output layer: no change before training
    target = torch.rand(4, 12, 12)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        g = torch.Generator()
        g.manual_seed(1)
        loss = ((model.rollout(x, 6, g)[:, :4] - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
