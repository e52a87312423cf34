"""Growing digits from a coloured seed: seeds and labels, classifier-free guidance's lockstep pair of rollouts, a
critic that sees the class, the evaluation (an independent classifier, the spread, healing, Figure 18's panels),
the verbs' --class, --samples and --guidance, resume, and one line for each bad input."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from conftest import last_json, one_error_line, run_cli

# scikit-learn's digits at 8×8 cells with 2 of margin (12×12)
RUN = ["--preset", "grow-digits", "--size", "8", "--padding", "2", "--iters", "3", "--batch", "4", "--seed", "1",
       "--quiet", "--device", "cpu", "--set", "steps_min=4", "--set", "steps_max=6", "--set", "pool_size=16",
       "--set", "hidden=16", "--set", "channels=8", "--set", "checkpoint_every=2",
       "--set", "damage_count=1", "--set", "task.fresh=2"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A plain model and one trained with class dropout and a critic."""
    from ncacli.cli import main

    root = tmp_path_factory.mktemp("digits")
    assert main(["train", *RUN, "--out", str(root / "plain")]) == 0
    guided = ["--set", "task.class_drop=0.5", "--loss", "l1+wgan-gp", "--set", "objectives.wgan-gp.width=4",
              "--set", "objectives.wgan-gp.n_critic=1"]  # fmt: skip
    assert main(["train", *RUN, *guided, "--out", str(root / "guided")]) == 0
    return root


def test_a_seed_is_one_cell_of_its_class_s_colour_and_a_dropped_class_is_grey(runs):
    import ncacli.api as nca
    from ncacli.tasks.classify import PALETTE

    task = nca.load(runs / "plain" / "model.safetensors").task
    assert task.spec.model.condition_channels == 0 and task.spec.task.grid == [12, 12] and task.k == 10
    x = task.class_seeds(torch.tensor([3, -1]))
    assert x.shape == (2, 8, 12, 12) and int((x.abs().sum(1) > 0).sum()) == 2  # one cell each
    assert torch.allclose(x[0, :3, 6, 6], torch.tensor(PALETTE[3])) and bool((x[1, :3, 6, 6] == 0.5).all())
    assert bool((x[:, 3:, 6, 6] == 1).all())
    labels = torch.tensor([5, -1 - 5])  # image 5, and image 5 with its class dropped
    assert task.images_of(labels).tolist() == [5, 5]
    c = int(task.load_data().labels[5])
    assert task.classes_of(labels).tolist() == [c, -1]
    onehot = task.critic_condition(task.classes_of(labels))
    assert onehot.shape == (2, 10, 1, 1) and onehot[0, c].item() == 1 and onehot.sum().item() == 1


def test_class_drop_draws_null_labels_at_its_rate():
    import ncacli.api as nca
    from ncacli.config import resolve
    from ncacli.tasks.digits import GrowDigitsTask

    config = resolve("grow-digits", None, ["size=8", "padding=2", "task.class_drop=0.5"], {})
    task = GrowDigitsTask.from_config(config, "cpu")
    labels = task.fresh_labels(2000, torch.Generator().manual_seed(0))
    assert 0.45 < float((labels < 0).float().mean()) < 0.55
    assert bool((task.images_of(labels) >= 0).all())
    del nca


def test_guidance_of_scale_one_is_the_plain_step_and_the_null_seed_is_unmoved_by_it(runs):
    import ncacli.api as nca
    from ncacli.engine.guidance import Guided

    model = nca.load(runs / "guided" / "model.safetensors")
    nca_ = model.nca
    with torch.no_grad():  # a trained update: not zero, so the branches differ
        for p in nca_.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    task = model.task
    seed, null = task.class_seeds(torch.tensor([4, 4])), task.class_seeds(torch.tensor([-1]))
    plain = nca_.rollout(seed, 12, torch.Generator().manual_seed(3))
    with torch.no_grad():
        one = Guided(nca_, null, 1.0).rollout(seed, 12, torch.Generator().manual_seed(3))
        two = Guided(nca_, null, 2.0).rollout(seed, 12, torch.Generator().manual_seed(3))
        # the null seed guided is the null seed grown: its two branches are one (c = u)
        free = nca_.rollout(null.expand(2, -1, -1, -1), 12, torch.Generator().manual_seed(3))
        guided_null = Guided(nca_, null, 3.0).rollout(null.expand(2, -1, -1, -1), 12, torch.Generator().manual_seed(3))
    # u + 1·(c − u) rounds differently from c: a tolerance of float32's rounding over 12 steps
    assert torch.allclose(one, plain.detach(), atol=1e-5)
    assert (two - one).abs().max() > 1e-3
    assert torch.allclose(guided_null, free, atol=1e-5)


def test_the_evaluation_recognises_measures_the_spread_and_draws_figure_18(capsys, tmp_path, runs):
    code, out, err = run_cli(capsys, "evaluate", runs / "plain", "--trials", "3", "--final", "6", "--json",
                             "--plot", tmp_path / "f.png")  # fmt: skip
    assert code == 0, err
    doc = last_json(out)
    assert doc["samples_per_class"] == 3 and doc["steps"] == 6 and doc["guidance"] is None
    assert doc["classifier"]["train_images"] == 1438
    assert doc["classifier"]["test_accuracy"] > 0.85  # a real classifier of the held-out digits
    assert 0 <= doc["recognised"] <= 1 and set(doc["classes"]) == {str(i) for i in range(10)}
    assert doc["data_variance"] > 0 and doc["classes"]["0"]["data"]["pairwise_l1"] > 0
    with Image.open(tmp_path / "f.png") as im:  # ten rows of three samples and their spread, 24 px tiles, 2 px gaps
        assert im.size == (4 * 24 + 3 * 2, 10 * 24 + 9 * 2)
    assert 0 <= doc["recognised_after_damage"] <= 1 and doc["damage"]["radius"] == 0.2
    code, out, err = run_cli(capsys, "evaluate", runs / "guided", "--trials", "2", "--final", "4", "--json",
                             "--guidance", "2", "--perturb", "none")  # fmt: skip
    assert code == 0, err
    doc = last_json(out)
    assert doc["guidance"] == 2 and doc["damage"] is None and doc["recovery"] is None


def test_the_spread_is_zero_for_equal_samples_and_grows_with_their_differences():
    from ncacli.tasks.digits_evaluation import spread

    same = torch.rand(1, 1, 6, 6).expand(4, -1, -1, -1)
    assert spread(same) == {"variance": 0.0, "pairwise_l1": 0.0}
    two = torch.stack([torch.zeros(1, 6, 6), torch.ones(1, 6, 6)])
    assert spread(two) == pytest.approx({"variance": 0.25, "pairwise_l1": 1.0})


def test_grow_writes_samples_of_a_class_with_their_spread(capsys, tmp_path, runs):
    model = runs / "guided" / "model.safetensors"
    code, _, err = run_cli(capsys, "grow", model, "--class", "8", "--samples", "9", "--steps", "5",
                           "--out", tmp_path / "eights.png", "--scale", "2")  # fmt: skip
    assert code == 0, err
    with Image.open(tmp_path / "eights.png") as im:  # nine samples and the spread in one row, 2 px gaps
        assert im.size == (10 * 24 + 9 * 2, 24)
    code, out, err = run_cli(capsys, "grow", model, "--class", "8", "--guidance", "3", "--steps", "5",
                             "--out", tmp_path / "g.png", "--json")  # fmt: skip
    assert code == 0, err
    code, out, err = run_cli(capsys, "render", model, tmp_path / "g.gif", "--class", "2", "--guidance", "3",
                             "--steps", "4", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["guidance"] == 3


@pytest.mark.parametrize(
    "args, words",
    [
        (["grow", "plain", "--guidance", "2", "--out", "x.png"], ("without class dropout", "class_drop")),
        (["grow", "guided", "--class", "12", "--out", "x.png"], ("--class 12", "0 … 9")),
        (["grow", "guided", "--samples", "3", "--out", "x.safetensors"], ("--samples", "--batch")),
        (["grow", "guided", "--guidance", "50", "--out", "x.png"], ("--guidance 50", "between")),
        (["evaluate", "plain", "--guidance", "2"], ("without class dropout",)),
        (["render", "guided", "x.html"], ("page",)),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, runs, args, words):
    verb, model, *rest = args
    path = runs / model / "model.safetensors"
    rest = [str(tmp_path / a) if a.startswith("x.") else a for a in rest]
    code, _, err = run_cli(capsys, verb, path, *rest)
    assert code != 0
    one_error_line(err, *words)
    assert not list(tmp_path.iterdir())


def test_guidance_on_another_task_s_model_is_refused(capsys, tmp_path):
    code, _, err = run_cli(capsys, "grow", "lizard", "--guidance", "2", "--out", tmp_path / "x.png")
    assert code != 0
    one_error_line(err, "--guidance", "trained without it")
    code, _, err = run_cli(capsys, "evaluate", "lizard", "--guidance", "2")
    assert code != 0
    one_error_line(err, "--guidance", "trained without it")


def test_a_bad_class_drop_and_condition_channels_are_refused(capsys, tmp_path):
    for sets, words in ((["task.class_drop=1.0"], ("class_drop", "[0, 1)")),
                        (["condition_channels=3"], ("condition_channels",))):  # fmt: skip
        args = [a for s in sets for a in ("--set", s)]
        code, _, err = run_cli(capsys, "train", *RUN, *args, "--out", tmp_path / "r")
        assert code != 0
        one_error_line(err, *words)
        assert not (tmp_path / "r").exists()


def test_a_run_resumes_with_its_critic_and_pool_labels(capsys, runs, tmp_path):
    import shutil

    run = tmp_path / "g"
    shutil.copytree(runs / "guided", run)
    code, out, err = run_cli(capsys, "train", "--resume", run, "--iters", "5", "--quiet")
    assert code == 0, err
    from safetensors.torch import load_file

    tensors = load_file(str(run / "resume.safetensors"))
    assert any(k.startswith("objective.0.wgan-gp.critic.") for k in tensors)
    assert tensors["objective.0.wgan-gp.critic.net.0.weight"].shape[1] == 4 + 10  # the picture and the class
    assert bool((tensors["pool_labels"] < 0).any())  # dropped classes kept in the pool


def test_figure18_trains_the_guided_row_and_measures_it_with_and_without_guidance(tmp_path):
    """benchmarks/figure18.py: the cfg row (a critic, class dropout) trained, then measured plain and at a scale,
    into a table, its JSON and the panels side by side."""
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "f18"
    args = [sys.executable, str(ROOT / "benchmarks" / "figure18.py"), "--train", "--rows", "cfg", "--iters", "1",
            "--trials", "2", "--scales", "3", "--device", "cpu", "--out", str(out), "--set", "size=8",
            "--set", "padding=2", "--set", "pool_size=16", "--set", "steps_min=4", "--set", "steps_max=5",
            "--set", "objectives.wgan-gp.width=4"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((out / "table.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["L1 + critic + CFG", "L1 + critic + CFG, w=3"]
    assert [r["guidance"] for r in rows] == [None, 3.0] and rows[0]["iterations"] == 1
    assert "| L1 + critic + CFG, w=3 |" in proc.stdout and (out / "figure18.png").stat().st_size > 1000
    bad = subprocess.run([*args[:4], "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "nope not among" in bad.stderr


def test_guidance_of_a_model_that_does_not_step_is_one_line(capsys, tmp_path):
    args = ["--preset", "grow-digits", "--model", "unet", "--size", "8", "--padding", "2", "--iters", "1", "--batch",
            "4", "--quiet", "--device", "cpu", "--set", "pool_size=16", "--set", "damage_count=1", "--set",
            "task.fresh=2", "--set", "task.class_drop=0.5", "--set", "architecture_options.width=2",
            "--set", "architecture_options.levels=1", "--out", tmp_path / "u"]  # fmt: skip
    code, _, err = run_cli(capsys, "train", *args)
    assert code == 0, err
    code, _, err = run_cli(capsys, "grow", tmp_path / "u" / "model.safetensors", "--guidance", "2",
                           "--out", tmp_path / "x.png")  # fmt: skip
    assert code != 0
    one_error_line(err, "--guidance", "does not step")
    assert not (tmp_path / "x.png").exists()
