"""Conditional NCAs (the NCAtorch review §3.1.2) and spatial conditioning (the Fun with NCA report): engine,
training, verbs."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, last_json, one_error_line, run_cli
from ncacli.config import resolve
from ncacli.engine import NCA, ModelConfig, make_seed, one_hot, other_labels, ramp
from ncacli.errors import UsageError
from ncacli.evaluation.metrics import mse
from ncacli.evaluation.protocol import Protocol, run_protocol
from ncacli.train.loop import Trainer, run


def tiny_conditional(k: int = 3, **kw) -> NCA:
    torch.manual_seed(0)
    model = NCA(ModelConfig(channels=8, hidden=16, condition_channels=k, **kw))
    with torch.no_grad():  # a last layer that is not zero, so the condition shows at once
        for p in model.update.parameters():
            p.normal_(0, 0.3)
    return model


def seeds(n: int = 2, size: int = 12) -> torch.Tensor:
    return make_seed(n, 8, size, size)


def roll(model, x, steps, condition, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    return model.rollout(x, steps, g, condition=condition, **kw)


def test_the_condition_steers_the_rollout_and_is_required():
    model = tiny_conditional()
    x = seeds()
    with torch.no_grad():
        a = roll(model, x, 6, one_hot(torch.tensor([0, 0]), 3))
        b = roll(model, x, 6, one_hot(torch.tensor([0, 2]), 3))
    assert a.shape == x.shape  # the state keeps its channels; the condition is beside it
    # Sample 0 has the same condition in both batches, but the active engine gathers the active cells of the
    # whole batch into one matrix product, whose rows round differently when the other sample changes (3.6e-7
    # on values up to 6.5, on AVX2 and AVX-512 CPUs): equal up to float32 rounding, not bit for bit.
    assert torch.allclose(a[0], b[0], rtol=0, atol=1e-5)
    assert (a[1] - b[1]).abs().max() > 0.1  # the other class steers sample 1 far from it
    with pytest.raises(ValueError, match="needs a condition"):
        model(x)
    with pytest.raises(ValueError, match="needs a condition"):
        model(x, None, torch.zeros(2, 2, 1, 1))
    plain = NCA(ModelConfig(channels=8, hidden=16))
    with pytest.raises(ValueError, match="not conditional"):
        plain(x, None, one_hot(torch.tensor([0, 1]), 3))


def test_the_perception_reads_state_and_condition():
    for perception in ("sobel", "conv", "combined"):
        model = NCA(ModelConfig(channels=8, hidden=16, perception=perception, condition_channels=4))
        plain = NCA(ModelConfig(channels=8, hidden=16, perception=perception))
        assert model.parameter_count() > plain.parameter_count()
        out = roll(model, seeds(), 3, one_hot(torch.tensor([1, 3]), 4))
        assert out.shape == (2, 8, 12, 12) and torch.isfinite(out).all()


def test_a_switch_mid_rollout_equals_two_rollouts():
    model = tiny_conditional()
    x = seeds(1)
    c0, c2 = one_hot(torch.tensor([0]), 3), one_hot(torch.tensor([2]), 3)
    with torch.no_grad():
        g = torch.Generator().manual_seed(5)
        switched = model.rollout(x, 10, g, condition=lambda step: c0 if step <= 4 else c2)
        g = torch.Generator().manual_seed(5)
        two = model.rollout(model.rollout(x, 4, g, condition=c0), 6, g, condition=c2)
    assert torch.equal(switched, two)


def test_checkpointed_and_truncated_rollouts_keep_the_condition():
    model = tiny_conditional()
    x = seeds()
    c = one_hot(torch.tensor([1, 2]), 3)

    def grads(**kw):
        model.zero_grad()
        roll(model, x, 8, c, **kw)[:, :4].square().mean().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain, checked = grads(), grads(checkpoint=3)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, checked, strict=True))
    assert all(torch.isfinite(g).all() for g in grads(truncate=4))


def test_a_condition_does_not_bring_dead_cells_to_life():
    model = tiny_conditional(2)
    x = torch.zeros(1, 8, 12, 12)  # nothing alive: alive masking keeps it empty whatever the class
    with torch.no_grad():
        out = roll(model, x, 4, one_hot(torch.tensor([1]), 2))
    assert out.abs().sum() == 0


def test_a_condition_map_gives_each_cell_its_own_class():
    """Left half black (class 0), right half white (class 1): after n steps of a 3×3 rule, the cells more
    than n columns from the seam are exactly those of a rollout under that class alone."""
    model = tiny_conditional(2, alive_masking=False, padding_mode="circular")
    x = torch.rand(1, 8, 12, 24, generator=torch.Generator().manual_seed(3))
    brightness = torch.zeros(12, 24)
    brightness[:, 12:] = 1.0
    mapped = ramp(brightness, 2)[None]
    steps = 3
    with torch.no_grad():
        out = roll(model, x, steps, mapped)
        zero = roll(model, x, steps, one_hot(torch.tensor([0]), 2))
        one = roll(model, x, steps, one_hot(torch.tensor([1]), 2))
    # on a torus the seams are at columns 12 and 0. Exact: the same batch and fire mask, and the perception sees
    # the same values in the same layout away from the seams (the condition is expanded and made channels-last)
    assert torch.equal(out[..., steps : 12 - steps], zero[..., steps : 12 - steps])
    assert torch.equal(out[..., 12 + steps : 24 - steps], one[..., 12 + steps : 24 - steps])
    assert not torch.equal(out[..., 12 - steps : 12 + steps], zero[..., 12 - steps : 12 + steps])


def test_ramp_and_mutation_labels():
    values = torch.tensor([[0.0, 0.5, 1.0]])
    two = ramp(values, 2)
    assert two.shape == (2, 1, 3)
    assert torch.allclose(two[:, 0], torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]]))
    three = ramp(values, 3)
    assert torch.allclose(three[:, 0, 1], torch.tensor([0.0, 1.0, 0.0]))  # middle grey: the middle class
    assert torch.allclose(ramp(torch.rand(5, 7), 4).sum(0), torch.ones(5, 7))
    labels = torch.arange(200) % 5
    switched = other_labels(labels, 5, torch.Generator().manual_seed(0))
    assert (switched != labels).all() and set(switched.tolist()) == set(range(5))


def test_config_derives_condition_channels_and_refuses_what_cannot_work():
    assert resolve("growing", flags={"emojis": ["🦎", "🦋"]}).condition_channels == 2
    assert resolve("growing", flags={"targets": ["a.png"], "emojis": ["🦋"]}).condition_channels == 2
    assert resolve("conditional", flags={"emojis": [], "emoji": "🦋"}).condition_channels == 0
    for flags, message in (
        ({"emojis": ["🦎"]}, "two or more"),
        ({"condition_channels": 3}, "needs as many targets"),
        ({"emojis": ["🦎", "🦋"], "condition_channels": 3}, "one per class"),
        ({"emojis": ["🦎", "🦋"], "loss": "clip", "objectives": {"clip": {"prompt": "fire"}}}, "mse"),
        ({"emojis": ["🦎", "🦋"], "mode": "regenerating", "damage_count": 3, "mutation_count": 5}, "below batch"),
    ):
        with pytest.raises(UsageError, match=message):
            resolve("growing", flags=flags)


def two_targets(size: int = 12) -> torch.Tensor:
    """A red square and a blue ring, premultiplied RGBA ``(2, 4, H, W)``."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2).sqrt()
    t = torch.zeros(2, 4, size, size)
    square = (yy - size / 2 + 0.5).abs().le(3) & (xx - size / 2 + 0.5).abs().le(3)
    t[0, 0], t[0, 3] = square.float(), square.float()
    ring = (r < 4.5).float()
    t[1, 2], t[1, 3] = ring, ring
    return t


SETS = ["steps_min=8", "steps_max=12", "pool_size=16", "hidden=32", "batch=6", "size=6", "padding=3"]
SETS += ["device='cpu'", "damage_count=1", "mutation_count=2", "checkpoint_every=1000", "lr=0.004"]


def conditional_trainer(iters: int = 40, mode: str = "regenerating") -> Trainer:
    config = resolve(mode, None, [*SETS, f"iters={iters}", "emojis=['a', 'b']"])
    return Trainer(config, two_targets(), torch.device("cpu"))


def test_pooled_batches_mutate_the_best_samples_class():
    trainer = conditional_trainer()
    pooled = trainer.pool.labels.clone()
    assert sorted(pooled.unique().tolist()) == [0, 1]
    idx, _, labels = trainer.batch()
    assert labels is not None and len(labels) == 6
    # sorted worst first: a fresh seed, two kept, the two best before the damaged one switched class
    assert (labels[3:5] != pooled[idx[3:5]]).all() and torch.equal(labels[1:3], pooled[idx[1:3]])
    assert labels[5] == pooled[idx[5]]
    trainer.step()
    assert not torch.equal(trainer.pool.labels, pooled)  # the switched classes were written back


def test_training_learns_each_class():
    trainer = conditional_trainer(100, "growing")
    x = trainer.seeds(2)
    both = torch.tensor([0, 1])
    with torch.no_grad():
        first = trainer.loss(trainer.model.rollout(x, 10, None, condition=one_hot(both, 2)), both)
    run(trainer, lambda r: None, lambda t: None)
    with torch.no_grad():
        grown = trainer.model.rollout(x, 10, torch.Generator().manual_seed(0), condition=one_hot(both, 2))
    after = trainer.loss(grown, both)
    assert (after < first * 0.6).all(), (first, after)
    # each class's pattern is closer to its own target than to the other one
    own = mse(grown, trainer.target[0])[0] + mse(grown, trainer.target[1])[1]
    crossed = mse(grown, trainer.target[1])[0] + mse(grown, trainer.target[0])[1]
    assert own < crossed / 2


def test_a_resumed_conditional_run_matches_an_uninterrupted_one():
    full = conditional_trainer(8)
    run(full, lambda r: None, lambda t: None)
    first = conditional_trainer(8)
    while first.iteration < 4:
        first.step()
    tensors, meta = first.state_tensors()
    assert "pool_labels" in tensors
    second = conditional_trainer(8)
    second.load_state_tensors(tensors, meta)
    run(second, lambda r: None, lambda t: None)
    for a, b in zip(full.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(full.pool.labels, second.pool.labels)


def test_the_mutation_protocol_measures_against_the_new_class():
    model = tiny_conditional(2)
    targets = two_targets()[:, :, :12, :12]
    x = make_seed(1, 8, 12, 12)
    protocol = Protocol(stage1=(2, 4), stage2=5, perturb_at=6, final=12, perturb="mutation", trials=2)
    labels, mutated = torch.tensor([0, 1]), torch.tensor([1, 0])
    result = run_protocol(model, x, targets, {"mse": _metric()}, protocol, labels, mutated)
    g = torch.Generator().manual_seed(protocol.seed)
    with torch.no_grad():
        state = x.expand(2, -1, -1, -1).clone()
        at6 = model.rollout(state, 6, g, condition=one_hot(labels, 2))
        at12 = model.rollout(at6, 6, g, condition=one_hot(mutated, 2))
    m = result["metrics"]["mse"]
    assert m["before_perturbation"]["mean"] == pytest.approx(
        float(mse(at6[:1], targets[0]) + mse(at6[1:], targets[1])) / 2
    )
    for i in range(2):
        trial = result["trials"][i]
        assert trial["class"] == int(labels[i]) and trial["mutated_to"] == int(mutated[i])
        assert trial["mse"]["perturbed"] == pytest.approx(float(mse(at6[i : i + 1], targets[mutated[i]])))
        assert trial["mse"]["stage3"] == pytest.approx(float(mse(at12[i : i + 1], targets[mutated[i]])))
    with pytest.raises(ValueError, match="not conditional"):
        run_protocol(NCA(ModelConfig(channels=8, hidden=16)), x, targets[0], {"mse": _metric()}, protocol)


def _metric():
    from ncacli.evaluation.metrics import make_metrics

    return make_metrics(["mse"], torch.device("cpu"))["mse"]


# --- the verbs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """Two target pictures (a red square, a blue ring) as PNG files."""
    folder = tmp_path_factory.mktemp("classes")
    paths = []
    for name, t in zip(("square", "ring"), two_targets(16), strict=True):
        rgba = torch.cat([t[:3] / t[3:].clamp_min(1e-6), t[3:]]).clamp(0, 1)
        path = folder / f"{name}.png"
        Image.fromarray((rgba.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def conditional_model(tmp_path_factory, pictures):
    from ncacli.cli import main

    out = tmp_path_factory.mktemp("runs") / "cond"
    args = ["train", "--target", pictures[0], "--target", pictures[1], "--preset", "conditional"]
    assert main([str(a) for a in [*args, "--iters", "6", "--out", out, *TINY]]) == 0
    return out / "model.safetensors"


def test_train_on_several_targets_writes_a_conditional_model(capsys, conditional_model):
    code, out, _ = run_cli(capsys, "info", conditional_model, "--json")
    info = last_json(out)
    assert code == 0 and info["config"]["condition_channels"] == 2
    assert [n.rsplit("/", 1)[-1] for n in info["spec"]["task"]["classes"]] == ["square.png", "ring.png"]
    assert info["target"][:2] == [2, 4]
    preview = Image.open(conditional_model.parent / "preview.png")
    assert preview.height > preview.width / 3  # one row per class: target, step 96, step 200


def test_grow_takes_a_class_by_index_or_name(capsys, conditional_model, tmp_path):
    states = {}
    for cond in ("0", "1", "ring", "square.png"):
        code, _, err = run_cli(
            capsys, "grow", conditional_model, "-n", "20", "-o", tmp_path / f"{cond}.safetensors", "--condition", cond
        )
        assert code == 0, err
        from ncacli.io.state_file import parse_state

        states[cond] = parse_state((tmp_path / f"{cond}.safetensors").read_bytes(), cond)[0]
    assert torch.equal(states["1"], states["ring"]) and torch.equal(states["0"], states["square.png"])
    assert not torch.equal(states["0"], states["1"])
    code, _, err = run_cli(capsys, "grow", conditional_model, "-o", tmp_path / "x.png", "--condition", "7")
    assert code == 2
    one_error_line(err, "--condition 7", "0 … 1")
    code, _, err = run_cli(capsys, "grow", conditional_model, "-o", tmp_path / "x.png", "--condition", "cat")
    one_error_line(err, "not a class", "square.png")


def test_condition_options_on_a_plain_model_are_one_line(capsys, tiny_model, tmp_path):
    for args in (
        ("grow", tiny_model, "-o", tmp_path / "x.png", "--condition", "1"),
        ("render", tiny_model, tmp_path / "x.gif", "--switch-at", "3", "--condition-to", "1"),
        ("evaluate", tiny_model, "--perturb", "mutation", "--metric", "mse"),
    ):
        code, _, err = run_cli(capsys, *args)
        assert code != 0
        one_error_line(err, "not conditional")


def test_render_switches_class_mid_run(capsys, conditional_model, tmp_path):
    out = tmp_path / "switch.mp4"
    code, stdout, err = run_cli(
        capsys, "render", conditional_model, out, "-n", "30", "--condition", "0", "--switch-at", "15",
        "--condition-to", "1", "--json",
    )  # fmt: skip
    assert code == 0, err
    summary = last_json(stdout)
    assert summary["switch_at"] == 15 and summary["frames"] == 31
    frames = imageio.mimread(out)
    assert len(frames) == 31
    code, _, err = run_cli(capsys, "render", conditional_model, out, "--switch-at", "15")
    one_error_line(err, "--switch-at and --condition-to")


def test_spatial_conditioning_from_a_map_and_a_video(capsys, conditional_model, tmp_path):
    """Half the map black, half white: the left half grows under class 0, the right under class 1."""
    h, w = 16, 16
    left = np.zeros((h, w), np.uint8)
    left[:, w // 2 :] = 255
    mask = tmp_path / "half.png"
    Image.fromarray(left).save(mask)
    for cond, name in (("--condition-map", mask), ("--condition", "0"), ("--condition", "1")):
        code, _, err = run_cli(
            capsys, "grow", conditional_model, "-n", "25", "-o", tmp_path / f"{cond}{name}.safetensors", cond, name
        )
        assert code == 0, err
    from ncacli.io.state_file import parse_state

    def load(cond, name):
        return parse_state((tmp_path / f"{cond}{name}.safetensors").read_bytes(), "s")[0][0]

    mapped, zero, one = load("--condition-map", mask), load("--condition", "0"), load("--condition", "1")
    assert not torch.equal(mapped, zero) and not torch.equal(mapped, one)
    video = tmp_path / "control.gif"
    imageio.mimsave(video, [np.zeros((h, w, 3), np.uint8), np.full((h, w, 3), 255, np.uint8)], duration=100)
    code, stdout, err = run_cli(
        capsys,
        "render",
        conditional_model,
        tmp_path / "v.gif",
        "-n",
        "6",
        "--every",
        "3",
        "--condition-video",
        video,
        "--json",
    )
    assert code == 0, err
    assert last_json(stdout)["frames"] == 3
    # a black frame then a white one, 3 steps each: class 0 for steps 1–3, then class 1
    args = ["-n", "6", "--every", "3", "--condition", "0", "--switch-at", "3", "--condition-to", "1"]
    code, _, err = run_cli(capsys, "render", conditional_model, tmp_path / "s.gif", *args)
    assert code == 0, err
    by_video, by_switch = imageio.mimread(tmp_path / "v.gif"), imageio.mimread(tmp_path / "s.gif")
    # exact: black and white frames are exactly the one-hot classes, so every step computes what the switch does
    assert all(np.array_equal(a, b) for a, b in zip(by_video, by_switch, strict=True))
    code, _, err = run_cli(capsys, "render", conditional_model, tmp_path / "c.gif", *args[:6])
    assert code == 0, err
    assert not np.array_equal(imageio.mimread(tmp_path / "c.gif")[2], by_switch[2])  # the switch shows
    code, _, err = run_cli(
        capsys, "render", conditional_model, tmp_path / "v.gif", "--condition-video", tmp_path / "none.mp4"
    )
    one_error_line(err, "video not found")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    code, _, err = run_cli(capsys, "render", conditional_model, tmp_path / "v.gif", "--condition-video", broken)
    assert code == 1
    one_error_line(err, "broken.mp4")


def test_evaluate_mutation_reports_recovery_per_class(capsys, conditional_model):
    code, out, err = run_cli(
        capsys, "evaluate", conditional_model, "--perturb", "mutation", "--metric", "mse,psnr", "--trials", "4",
        "--stage1", "4-6", "--stage2", "9", "--perturb-at", "10", "--final", "20", "--json",
    )  # fmt: skip
    assert code == 0, err
    doc = last_json(out)
    classes = [t["class"] for t in doc["trials"]]
    assert classes == [0, 1, 0, 1] and all(t["mutated_to"] == 1 - t["class"] for t in doc["trials"])
    assert "class switched" in err
    code, out, err = run_cli(
        capsys, "evaluate", conditional_model, "--perturb", "mutation", "--metric", "mse", "--trials", "2",
        "--condition", "square", "--condition-to", "ring", "--final", "200", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert {(t["class"], t["mutated_to"]) for t in last_json(out)["trials"]} == {(0, 1)}
    code, _, err = run_cli(capsys, "evaluate", conditional_model, "--condition-to", "1", "--metric", "mse")
    one_error_line(err, "--perturb mutation")


def test_benchmark_refuses_a_conditional_model_in_one_line(capsys, conditional_model):
    code, _, err = run_cli(capsys, "benchmark", conditional_model, "--size", "12", "--batch", "1", "--steps", "2")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1 and lines == [
        f"nca: error: {conditional_model}: a conditional model; nca benchmark times models without a condition"
    ], err


def test_grow_and_render_ask_the_task_what_the_cells_read(capsys, conditional_model, tmp_path, monkeypatch):
    """The verbs take the condition from the model's task: a task that reads a condition and does not say what
    to grow it with is refused in one line, not grown from a class made up for it; a task that says is obeyed."""
    import torch

    from ncacli.tasks.base import Schedule, Task
    from ncacli.tasks.image import ImageTask

    code, _, err = run_cli(capsys, "grow", conditional_model, "-n", "12", "-o", tmp_path / "first.safetensors")
    assert code == 0, err
    monkeypatch.setattr(ImageTask, "schedule", Task.schedule)
    for verb in (
        ["grow", conditional_model, "-o", tmp_path / "no.png"],
        ["render", conditional_model, tmp_path / "no.gif"],
    ):
        code, _, err = run_cli(capsys, *verb)
        assert code == 1 and not list(tmp_path.glob("no.*"))
        one_error_line(err, "its task 'image' reads 2 condition channels and does not say what to grow them with")
    second = lambda task, asked, grid, steps, every=1: Schedule(torch.tensor([[[[0.0]], [[1.0]]]]))  # noqa: E731
    monkeypatch.setattr(ImageTask, "schedule", second)
    code, _, err = run_cli(capsys, "grow", conditional_model, "-n", "12", "-o", tmp_path / "second.safetensors")
    assert code == 0, err
    monkeypatch.undo()
    code, _, err = run_cli(capsys, "grow", conditional_model, "-n", "12", "-c", "1", "-o", tmp_path / "one.safetensors")
    assert code == 0, err
    from ncacli.cli.common import read_state

    first, second, one = (read_state(str(tmp_path / f"{n}.safetensors"))[0] for n in ("first", "second", "one"))
    assert torch.equal(second, one) and not torch.equal(first, second)  # the task's condition is the one grown with
