"""The active-cell engine: the same states and gradients as the reference step, for every registered
perception and update rule, while the update runs only on the cells it can change."""

from __future__ import annotations

import pytest
import torch

from ncacli.bench.suites import trained_like
from ncacli.engine import NCA, PERCEPTIONS, CounterRandom, ModelConfig, active

PERCEPTION_NAMES = sorted(PERCEPTIONS)


@pytest.fixture
def always_active(monkeypatch):
    """Gather however many cells are active (the engine otherwise takes the dense step above a fraction)."""
    monkeypatch.setattr(active, "DENSE_INFERENCE", 1.0)
    monkeypatch.setattr(active, "DENSE_TRAINING", 1.0)


def generic(config: ModelConfig, seed: int = 1) -> NCA:
    """A model with every parameter nonzero (a fresh one's last layer is zero, which would hide the update)."""
    model = trained_like(config, seed=seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)) * 0.05)
    return model


def patchy(b: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Random values with alpha over the threshold on ~40% of the cells, so alive masking cuts both ways."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h, w, generator=g)
    x[:, 3] *= (torch.rand(b, h, w, generator=g) < 0.4).float()
    return x


def run(model: NCA, engine: str, x: torch.Tensor, steps: int, condition=None, generator=None, **options):
    """States, input gradient and parameter gradients of a rollout under ``engine``."""
    model.engine = engine
    model.zero_grad(set_to_none=True)
    xi = x.clone().requires_grad_(True)
    g = generator() if generator else torch.Generator().manual_seed(3)
    out = model.rollout(xi, steps, g, condition=condition, **options)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grad = xi.grad if xi.grad is not None else torch.zeros_like(x)  # truncated: no gradient reaches x
    return out.detach(), grad, [p.grad.clone() for p in model.parameters() if p.grad is not None]


def assert_same(a, b, tolerance: float = 1e-5) -> None:
    """Equal within ``tolerance`` relative to the largest value (sums run in another order)."""
    for u, v in zip([a[0], a[1], *a[2]], [b[0], b[1], *b[2]], strict=True):
        scale = v.abs().max().clamp_min(1e-6)
        assert ((u - v).abs().max() / scale).item() < tolerance


@pytest.mark.parametrize("padding", ["zeros", "circular"])
@pytest.mark.parametrize("perception", PERCEPTION_NAMES)
def test_every_perception_matches_the_reference(always_active, perception, padding):
    model = generic(ModelConfig(perception=perception, padding_mode=padding, hidden=24))
    x = patchy(2, 16, 9, 11)
    assert_same(run(model, "active", x, 4), run(model, "reference", x, 4))


@pytest.mark.parametrize(
    "perception, options",
    [
        ("conv", {"mode": "full"}),
        ("conv", {"mode": "separable", "features": 2}),
        ("conv", {"kernel_size": 5, "dilation": 2}),
        ("conv_scaled", {"per_feature": True}),
        ("conv_scaled", {"scale_identity": False}),
        ("combined", {"parts": [{"kernel_size": 3, "mode": "full"}, {"kernel_size": 5, "dilation": 2}]}),
        ("conv", {"mode": "full", "out_features": 20, "activation": "leaky_relu", "keep_state": False}),
        (
            "combined",
            {"keep_state": False, "parts": [{"mode": "full", "out_features": 8, "activation": "leaky_relu"}, {}]},
        ),
    ],
    ids=lambda o: str(o),
)
@pytest.mark.parametrize("padding", ["zeros", "circular"])
def test_learned_convolutions_are_gathered_and_match_the_reference(always_active, perception, options, padding):
    config = ModelConfig(perception=perception, perception_options=options, padding_mode=padding, hidden=24)
    model = generic(config)
    assert active.gathers(model.perceive)  # computed at the active cells alone, from their neighbours
    x = patchy(2, 16, 9, 11)
    assert_same(run(model, "active", x, 4), run(model, "reference", x, 4))


@pytest.mark.parametrize("perception", ["sobel", "sobel_laplacian", "sobel5", "combined"])
def test_a_pattern_clear_of_the_edge_matches_the_reference(always_active, perception):
    """No tap reaches beyond the grid (the zero cell is not appended): still the reference's states and
    gradients. The fixed kernels come as kernels shared by every channel, not as C-fold blocks."""
    model = generic(ModelConfig(perception=perception, hidden=24, condition_channels=2))
    x = torch.zeros(2, 16, 32, 32)
    x[:, :, 13:19, 13:19] = patchy(2, 16, 6, 6)
    condition = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 2, 1, 1)
    assert_same(run(model, "active", x, 4, condition), run(model, "reference", x, 4, condition))
    if perception != "combined":
        (taps,) = model.perceive.taps()
        kernels = len(model.perceive.kernels)
        assert taps.blocks is None and taps.shared.shape == (kernels, len(taps.offsets))


@pytest.mark.parametrize("perception", ["sobel", "conv", "combined"])
def test_a_dead_grid_gathers_no_cell(always_active, perception):
    """No cell alive: nothing to gather, by the shared kernels or the blocks; the state stays zero, as the
    reference's does."""
    model = generic(ModelConfig(perception=perception, hidden=24))
    x = torch.zeros(2, 16, 9, 11)
    out = run(model, "active", x, 3)
    assert_same(out, run(model, "reference", x, 3))
    assert not out[0].any()


def test_perceptions_not_linear_in_the_neighbours_are_computed_everywhere():
    for perception, options in [("attention", {}), ("combined", {"parts": [{"kind": "residual"}, {}]})]:
        model = NCA(ModelConfig(perception=perception, perception_options=options))
        assert not active.gathers(model.perceive)
    for perception in ("sobel", "conv", "combined", "conv_scaled"):
        assert active.gathers(NCA(ModelConfig(perception=perception)).perceive)


@pytest.mark.parametrize(
    "options",
    [
        {"update": "residual", "depth": 3},
        {"update_options": {"activation": "leaky_relu"}},
        {"depth": 2},
        {"fire_rate": 1.0},
        {"alive_masking": False},
        {"update_tanh": True, "perception": "sobel_laplacian"},
        {"signal_channels": 4, "signal_steps": 2},
        {"channels": 10, "perception": "sobel5"},
        {"alive_threshold": -0.5, "perception": "sobel_diagonal"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_update_variants_match_the_reference(always_active, options):
    model = generic(ModelConfig(hidden=24, **options))
    x = patchy(2, model.config.channels, 8, 8)
    assert_same(run(model, "active", x, 4), run(model, "reference", x, 4))


def test_conditional_and_counter_random_match_the_reference(always_active):
    model = generic(ModelConfig(hidden=24, condition_channels=3))
    x = patchy(2, 16, 8, 10)
    condition = torch.rand(2, 3, 8, 10)
    counter = lambda: CounterRandom(5)  # noqa: E731
    a = run(model, "active", x, 4, condition, counter)
    assert_same(a, run(model, "reference", x, 4, condition, counter))


def test_checkpointed_and_truncated_rollouts_match(always_active):
    model = generic(ModelConfig(hidden=24))
    x = patchy(2, 16, 10, 10)
    reference = run(model, "reference", x, 8, checkpoint=3)
    assert_same(run(model, "active", x, 8, checkpoint=3), reference)
    assert_same(run(model, "active", x, 8), reference)
    assert_same(run(model, "active", x, 8, truncate=3), run(model, "reference", x, 8, truncate=3))


def test_the_dense_fallback_draws_the_same_masks():
    """Above the active fraction the engine takes the reference step with the fire mask it drew."""
    model = generic(ModelConfig(hidden=24, alive_masking=False))  # every cell active: dense
    x = patchy(2, 16, 8, 8)
    assert_same(run(model, "active", x, 5), run(model, "reference", x, 5))


def test_the_update_runs_only_on_active_cells(always_active, monkeypatch):
    model = generic(ModelConfig(hidden=24))
    x = torch.zeros(3, 16, 20, 20)
    x[0, 3:, 5, 5] = 1.0  # one live cell: its 3×3 neighbourhood is alive, and the ring round it active
    x[2, 3:, 10:12, 10:12] = 1.0  # a 2×2 block: a 4×4 neighbourhood alive, 6×6 active
    seen: list[int] = []
    rows = model.update.rows
    monkeypatch.setattr(model.update, "rows", lambda f: seen.append(f.shape[0]) or rows(f))
    with torch.no_grad():
        model(x, torch.Generator().manual_seed(0))
    assert 0 < seen[0] <= 25 + 36  # of 1,200 cells: those that fired
    expected = NCA.reference_step(model, x, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model(x, torch.Generator().manual_seed(0)), expected, atol=1e-6)


def test_training_losses_match_between_engines():
    """Regenerating training (pool, damage) gives the same losses on both engines; the trainer's default is
    the active one."""
    from ncacli.config import resolve
    from ncacli.train.loop import Trainer

    sets = ["steps_min=8", "steps_max=12", "pool_size=16", "hidden=32", "batch=4", "damage_count=1"]
    config = resolve("regenerating", None, [*sets, "device='cpu'", "iters=3"])
    target = torch.zeros(4, 12, 12)
    target[:, 3:9, 4:8] = 0.8
    losses = {}
    for engine in ("active", "reference"):
        trainer = Trainer(config, target, torch.device("cpu"))
        assert trainer.model.engine == "active"
        trainer.model.engine = engine
        losses[engine] = [trainer.step().loss for _ in range(3)]
    assert losses["active"] == pytest.approx(losses["reference"], rel=1e-4)


def test_a_dead_cells_update_keeps_its_neighbour_alive(always_active):
    """The post-alive mask reads the updated alpha of dead cells too. Here the update is
    ``d alpha = −alpha + 0.3 · channel 4``: the living cell fades, and the dead cell D, marked in channel 4,
    gains alpha 0.3, which alone keeps its living neighbour P alive (and P's hidden value with it)."""
    model = generic(ModelConfig(hidden=8, fire_rate=1.0))
    first, last = model.update.net[0], model.update.net[-1]
    with torch.no_grad():
        for p in model.update.parameters():
            p.zero_()
        first.weight[0, 3 * 3, 0, 0] = 1.0  # hidden 0: the cell's own alpha (features grouped per channel)
        first.weight[1, 4 * 3, 0, 0] = 1.0  # hidden 1: the cell's own channel 4
        last.weight[3, 0, 0, 0], last.weight[3, 1, 0, 0] = -1.0, 0.3
    x = torch.zeros(1, 16, 9, 9)
    x[0, 3, 4, 2] = 0.5  # the only living cell; its neighbourhood reaches P = (4, 3)
    x[0, 5, 4, 3] = 0.7  # P's hidden value
    x[0, 3, 4, 4], x[0, 4, 4, 4] = 0.05, 1.0  # D = (4, 4): below the threshold, nothing alive around it
    with torch.no_grad():
        expected = model.reference_step(x, None)
        model.engine = "active"
        got = model(x, None)
    assert expected[0, 5, 4, 3] == pytest.approx(0.7)  # P lives on, through D's new alpha only
    assert torch.allclose(got, expected, atol=1e-6)


def test_auto_is_active_on_the_cpu_and_dense_on_gpus(capsys, tmp_path, target_png):
    """Until a GPU measurement says otherwise: the active step's per-step nonzero() synchronises a GPU, and its
    thresholds were tuned on a CPU. The engine that ran is named in train's and benchmark's JSON."""
    from conftest import TINY, last_json, run_cli
    from ncacli.engine.device import auto_engine

    assert auto_engine("cpu") == "active" and auto_engine(torch.device("cpu")) == "active"
    assert auto_engine("cuda") == auto_engine("cuda:1") == auto_engine("mps") == "reference"
    code, out, err = run_cli(capsys, "train", "--target", target_png, "--iters", "2", "--out", tmp_path / "r", *TINY)
    assert code == 0, err
    assert last_json(out)["engine"] == "active" and last_json(out)["device"] == "cpu"
    args = ["benchmark", "--size", "12", "--batch", "1", "--steps", "3", "--repeats", "1", "--device", "cpu", "--json"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    report = last_json(out)
    assert (report["engine"], report["engine_option"]) == ("active", "auto") and "engine active (auto)" in err
    code, out, err = run_cli(capsys, *args, "--engine", "reference")
    assert last_json(out)["engine"] == "reference" and "engine reference ·" in err


def test_train_grow_and_render_take_an_engine(capsys, tmp_path, target_png, tiny_model):
    """`--engine` on the verbs: the same run on either engine, and a bad name is one line before any file."""
    from conftest import TINY, last_json, one_error_line, run_cli

    losses = {}
    for engine in ("active", "reference"):
        out = tmp_path / engine
        args = ["train", "--target", target_png, "--iters", "3", "--out", out, "--engine", engine, *TINY, "--quiet"]
        code, stdout, err = run_cli(capsys, *args)
        assert code == 0, err
        losses[engine] = last_json(stdout)["loss"]
    assert losses["active"] == pytest.approx(losses["reference"], rel=1e-4)
    code, _, err = run_cli(capsys, "train", "--target", target_png, "--engine", "fastest", "--out", tmp_path / "no")
    assert code == 2 and not (tmp_path / "no").exists()
    one_error_line(err, "'fastest'")
    for verb, out in (("grow", tmp_path / "g.png"), ("render", tmp_path / "g.gif")):
        flag = ["--out", out] if verb == "grow" else [out, "--steps", "8"]
        code, _, err = run_cli(capsys, verb, tiny_model, *flag, "--engine", "fused", "--device", "cpu")
        assert code == 0 and out.is_file(), err
        assert "--engine fused:" in err and "active engine" in err  # says why it cannot run fused here
