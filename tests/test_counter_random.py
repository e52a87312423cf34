"""The counter-based fire masks: the documented hash, repeatable rollouts, checkpointing."""

from __future__ import annotations

import torch

from ncacli.engine import NCA, CounterRandom, ModelConfig, make_seed
from ncacli.engine.counter_random import MASK


def lowbias32(x: int) -> int:
    """The hash written out on Python ints, independent of the tensor code."""
    x &= MASK
    x ^= x >> 16
    x = (x * 0x7FEB352D) & MASK
    x ^= x >> 15
    x = (x * 0x846CA68B) & MASK
    return x ^ (x >> 16)


def test_numbers_follow_the_documented_hash():
    g = CounterRandom(seed=123456789)
    first = g.uniform(2, 3, 5)
    second = g.uniform(2, 3, 5)
    assert first.shape == (2, 1, 3, 5) and first.dtype == torch.float32 and g.calls == 2
    for call, numbers in enumerate((first, second)):
        key = lowbias32(lowbias32(123456789) ^ call)
        for b in range(2):
            for y in range(3):
                for x in range(5):
                    bits = lowbias32(lowbias32(key ^ b) ^ (y * 5 + x))
                    assert numbers[b, 0, y, x].item() == (bits >> 8) / 2**24
    assert not torch.equal(first, second)


def test_numbers_are_uniform():
    u = CounterRandom(7).uniform(4, 64, 64)
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean().item() - 0.5) < 0.01
    assert abs((u <= 0.5).float().mean().item() - 0.5) < 0.01


def random_model(**options) -> NCA:
    torch.manual_seed(0)
    model = NCA(ModelConfig(hidden=32, **options))
    with torch.no_grad():
        for p in model.update.parameters():
            p.normal_(0.0, 0.1)
    return model


def test_a_rollout_is_repeatable_and_the_seed_matters():
    model = random_model()
    x = make_seed(2, 16, 12, 12)
    with torch.no_grad():
        a = model.rollout(x, 10, CounterRandom(3))
        b = model.rollout(x, 10, CounterRandom(3))
        c = model.rollout(x, 10, CounterRandom(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # every sample draws its own mask


def test_checkpointed_rollout_replays_the_same_masks():
    model = random_model()
    x = make_seed(2, 16, 10, 10)
    g1, g2 = CounterRandom(5), CounterRandom(5)
    plain = model.rollout(x, 12, g1)
    plain.square().mean().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    checkpointed = model.rollout(x, 12, g2, checkpoint=4)
    checkpointed.square().mean().backward()
    assert torch.allclose(plain, checkpointed)
    assert g1.calls == g2.calls == 12
    for a, p in zip(grads, model.parameters(), strict=True):
        assert torch.allclose(a, p.grad, atol=1e-6)
