"""The learned depthwise kernels' C kernel (ncacli.engine.native) against the block-diagonal product it replaces:
features and both gradients, with and without the zero row beyond the edge, on one thread and two; and the
active step without it (no compiler, or NCA_NATIVE=0) still running, by the product."""

from __future__ import annotations

import pytest
import torch

from ncacli.engine import native
from ncacli.engine.perception import Taps

needs_library = pytest.mark.skipif(native.library() is None, reason="no C compiler here: the product path only")


def case(samples: int, h: int, w: int, c: int, kernels: int, size: int, dilation: int, beyond: bool, seed: int = 0):
    """Rows of ``samples`` grids (and a zero row when ``beyond``), about a third of the cells active, ascending,
    each with its neighbours at a ``size``×``size`` kernel's taps (wrapped, or the zero row beyond the edge)."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn(samples * h * w, c, generator=g)
    if beyond:
        rows = torch.cat([rows, rows.new_zeros(1, c)])
    index = (torch.rand(samples * h * w, generator=g) < 0.35).nonzero().squeeze(1)
    cell, sample = index % (h * w), index // (h * w)
    half = size // 2
    dy = torch.tensor([(t // size - half) * dilation for t in range(size * size)])
    dx = torch.tensor([(t % size - half) * dilation for t in range(size * size)])
    y, x = (cell // w).view(-1, 1) + dy, (cell % w).view(-1, 1) + dx
    if beyond:
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        flat = torch.where(inside, (sample.view(-1, 1) * h + y) * w + x, samples * h * w)
        assert not bool(inside.all())
    else:
        flat = (sample.view(-1, 1) * h + y % h) * w + x % w
    depthwise = torch.randn(size * size, kernels, c, generator=g)
    parts = torch.searchsorted(index, torch.arange(samples + 1) * (h * w))
    return rows, flat.contiguous(), depthwise, parts, samples * h * w


def by_product(rows, flat, depthwise):
    n, t = flat.shape
    matrix = Taps(((0, 0),) * t, None, depthwise=depthwise).matrix()
    return rows.index_select(0, flat.reshape(-1)).view(n, -1) @ matrix


@needs_library
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("beyond", [False, True])
@pytest.mark.parametrize(("channels", "kernels", "size", "dilation"), [(16, 3, 5, 2), (12, 3, 3, 1), (5, 2, 3, 1)])
def test_the_kernel_gives_the_product_s_features_and_gradients(threads, beyond, channels, kernels, size, dilation):
    rows, flat, depthwise, parts, skip = case(3, 11, 13, channels, kernels, size, dilation, beyond)
    grad = torch.randn(flat.shape[0], channels * kernels, generator=torch.Generator().manual_seed(1))
    results = []
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for through_kernel in (True, False):
            r, k = rows.clone().requires_grad_(), depthwise.clone().requires_grad_()
            out = native.depthwise_features(r, flat, k, parts, skip) if through_kernel else by_product(r, flat, k)
            out.backward(grad)
            results.append((out.detach(), r.grad[: len(rows) - beyond], k.grad))
    finally:
        torch.set_num_threads(before)
    # float32 sums in another order: the kernel adds taps one by one, the product in blocks
    for mine, theirs in zip(*results, strict=True):
        assert torch.allclose(mine, theirs, rtol=1e-5, atol=1e-4), (mine - theirs).abs().max()
    assert results[0][1].abs().sum() > 0 and results[0][2].abs().sum() > 0


@needs_library
def test_the_kernel_s_gradient_is_the_same_run_after_run():
    """Each thread sums its own share of the kernels' gradient, then the shares are added in thread order."""
    rows, flat, depthwise, parts, skip = case(4, 16, 16, 16, 3, 5, 2, True)
    grads = []
    for _ in range(3):
        k = depthwise.clone().requires_grad_()
        native.depthwise_features(rows, flat, k, parts, skip).square().sum().backward()
        grads.append(k.grad)
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[1], grads[2])


def test_without_a_compiler_the_active_step_takes_the_product(monkeypatch, tmp_path):
    from ncacli.engine import NCA, ModelConfig
    from ncacli.engine.active import tap_features

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    native.library.cache_clear()
    try:
        assert native.library() is None
        assert not list(tmp_path.rglob("*.so"))
        model = NCA(ModelConfig(perception="combined"))
        x = torch.randn(2, 16, 12, 12)
        index = torch.arange(0, 2 * 144, 3)
        seen = tap_features(model.perceive, x, index, "zeros")
    finally:
        native.library.cache_clear()
    dense = model.perceive(x).permute(0, 2, 3, 1).reshape(-1, seen.shape[1])[index]
    assert torch.allclose(seen, dense, atol=1e-5)


def test_nca_native_0_turns_it_off(monkeypatch):
    monkeypatch.setenv(native.DISABLE_ENV, "0")
    native.library.cache_clear()
    try:
        assert native.library() is None
        assert not native.usable(torch.zeros(4, 16), torch.zeros(9, 3, 16))
    finally:
        native.library.cache_clear()
