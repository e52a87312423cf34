"""The translate task: pairs from edges2emoji and from a pix2pix folder, training, the held-out split in the model
file, evaluation of each trial against its own pair, the GIF, and one line for every bad folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import last_json, one_error_line, run_cli, trained_and_stirred

SHRUNK = ["--iters", "4", "--size", "12", "--padding", "2", "--seed", "1", "--quiet", "--device", "cpu",
          "--set", "hidden=16", "--set", "pool_size=8", "--set", "batch=4", "--set", "steps_min=8",
          "--set", "steps_max=12", "--set", "checkpoint_every=2", "--set", "task.count=12",
          "--set", "task.test_fraction=0.25"]  # fmt: skip


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    """A model trained 4 iterations on 12 edges2emoji pairs, its last layer given small random weights so that
    it changes its state (an untrained NCA leaves it as it is)."""
    return trained_and_stirred(
        tmp_path_factory.mktemp("tr") / "e2e", "--task", "translate", "--data", "edges2emoji", *SHRUNK
    )


def test_edges2emoji_pairs_an_emoji_with_its_edges():
    from ncacli.io.pairs import load_pairs

    pairs = load_pairs("edges2emoji", 12, 2, count=12, test_fraction=0.25, seed=0)
    assert pairs.inputs.shape == (12, 1, 16, 16) and pairs.targets.shape == (12, 4, 16, 16)
    assert set(pairs.inputs.unique().tolist()) == {0.0, 1.0}  # an edge or not
    alpha = pairs.targets[:, 3]
    # every edge lies on the emoji or just outside its outline, none further out in the margin
    near = torch.nn.functional.max_pool2d((alpha[:, None] > 0).float(), 3, 1, 1) > 0
    assert bool((pairs.inputs[~near] == 0).all()) and 0 < float(pairs.inputs.mean()) < 0.5
    assert bool((alpha[:, :2] == 0).all()) and float(alpha.max()) == 1.0
    assert len(pairs.test) == 3 and not set(pairs.test.tolist()) & set(pairs.train.tolist())
    again = load_pairs("edges2emoji", 12, 2, count=12, test_fraction=0.25, seed=0)
    assert again.names == pairs.names and torch.equal(again.inputs, pairs.inputs)
    assert load_pairs("edges2emoji", 12, 2, count=12, test_fraction=0.25, seed=1).names != pairs.names


def test_the_model_file_keeps_the_held_out_pairs(translator):
    from ncacli.io.model_file import load

    loaded = load(str(translator / "model.safetensors"))
    spec = loaded.spec
    assert spec.task.name == "translate" and spec.model.condition_channels == 1
    assert spec.task.grid == [16, 16] and spec.task.channels["input"] == [0]
    assert len(loaded.tensors["task.test_index"]) == 3
    assert spec.task.options["train"] == 9 and "CC-BY 4.0" in spec.task.options["source"]


def test_each_trial_is_measured_against_its_own_pair(capsys, translator):
    """The stage-2 MSE of each trial equals the MSE of the same rollout, grown by hand on the trial's input, to its
    pair's target: the protocol pairs the condition and the target of every trial."""
    from ncacli.api import load
    from ncacli.io.pairs import load_pairs

    path = translator / "model.safetensors"
    code, out, _ = run_cli(capsys, "evaluate", path, "--metric", "mse", "--trials", "4", "--seed", "5", "--json")
    assert code == 0
    doc = last_json(out)
    labels = torch.tensor([t["class"] for t in doc["trials"]])
    model = load(path)
    test = model.task.test_index()
    assert torch.equal(labels, test[torch.arange(4) % len(test)])  # the held-out pairs, cycled
    pairs = load_pairs("edges2emoji", 12, 2, count=12, test_fraction=0.25, seed=0)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        x = model.nca.rollout(model.seed(4, (16, 16)), 149, g, condition=pairs.inputs[labels])
    mse = ((x[:, :4].clamp(0, 1) - pairs.targets[labels]) ** 2).mean((1, 2, 3))  # the picture, as MSE reads it
    stage2 = torch.tensor([t["mse"]["stage2"] for t in doc["trials"]])
    assert torch.allclose(stage2, mse, rtol=1e-5, atol=1e-7)
    assert len(set(stage2.tolist())) > 1  # the trials differ: each grows its own picture


def test_mutation_gives_another_held_out_input(capsys, translator):
    code, out, _ = run_cli(
        capsys, "evaluate", translator / "model.safetensors", "--metric", "mse", "--perturb", "mutation",
        "--trials", "3", "--final", "200", "--json",
    )  # fmt: skip
    assert code == 0
    trials = last_json(out)["trials"]
    assert all(t["mutated_to"] != t["class"] for t in trials)


def test_render_shows_input_growth_and_target(capsys, translator, tmp_path):
    out = tmp_path / "e2e.gif"
    code, _, err = run_cli(
        capsys, "render", translator / "model.safetensors", out, "--steps", "6", "--input", "#1",
        "--input-to", "#2", "--switch-at", "3",
    )  # fmt: skip
    assert code == 0, err
    with Image.open(out) as gif:
        assert gif.n_frames == 7 and gif.size[0] == 3 * gif.size[1]  # input | growth | target
    code, _, err = run_cli(capsys, "render", translator / "model.safetensors", out, "--input", "#9")
    one_error_line(err, "#9", "held-out split has pairs #0 … #2")
    code, _, err = run_cli(capsys, "render", translator / "model.safetensors", out, "--condition", "1")
    one_error_line(err, "--condition", "--input")


def side_by_side(path, left: np.ndarray, right: np.ndarray) -> None:
    Image.fromarray(np.concatenate([left, right], axis=1)).save(path)


def pix2pix_folder(root, n_train: int = 3, n_val: int = 2, side: int = 20):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            edges = np.full((side, side, 3), 255, np.uint8)
            edges[5:15, 5 + i] = 0
            photo = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
            side_by_side(root / split / f"{i}.jpg", edges, photo)
    return root


def test_a_pix2pix_folder_is_read_with_its_val_split_held_out(tmp_path):
    from ncacli.io.pairs import load_pairs

    pairs = load_pairs(str(pix2pix_folder(tmp_path / "e2h")), 12, 2)
    assert pairs.inputs.shape == (5, 3, 16, 16) and pairs.targets.shape == (5, 4, 16, 16)
    assert pairs.train.tolist() == [0, 1, 2] and pairs.test.tolist() == [3, 4]
    assert bool((pairs.targets[:, 3, 2:-2, 2:-2] == 1).all()) and bool((pairs.targets[:, 3, :2] == 0).all())
    assert pairs.names[3] == "val/0.jpg"


def test_training_on_a_folder(capsys, tmp_path):
    folder = pix2pix_folder(tmp_path / "e2h")
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--task", "translate", "--data", folder, "--out", out, *SHRUNK[:-4])
    assert code == 0, err
    from ncacli.io.model_file import load

    assert load(str(out / "model.safetensors")).spec.model.condition_channels == 3


def bad_folder(root, kind: str):
    if kind == "empty":
        (root / "train").mkdir(parents=True)
        (root / "val").mkdir()
    elif kind == "no val":
        pix2pix_folder(root)
        for f in (root / "val").iterdir():
            f.unlink()
        (root / "val").rmdir()
    elif kind == "not side by side":
        pix2pix_folder(root)
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "train" / "square.png")
    elif kind == "mixed sizes":
        pix2pix_folder(root)
        side_by_side(root / "val" / "big.png", np.zeros((30, 30, 3), np.uint8), np.zeros((30, 30, 3), np.uint8))
    elif kind == "not an image":
        pix2pix_folder(root)
        (root / "train" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("empty", "no images"),
        ("no val", "no val/ or test/ folder"),
        ("not side by side", "not two pictures side by side"),
        ("mixed sizes", "must share one size"),
        ("not an image", "not a readable image"),
    ],
)
def test_a_bad_folder_is_one_line_and_writes_nothing(capsys, tmp_path, kind, needle):
    folder = bad_folder(tmp_path / "bad", kind)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--task", "translate", "--data", folder, "--out", out, *SHRUNK[:-4])
    one_error_line(err, needle)
    assert code != 0 and not out.exists()


def test_an_unknown_data_set_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--task", "translate", "--data", tmp_path / "nowhere", "--out",
                           tmp_path / "run", *SHRUNK[:-4])  # fmt: skip
    one_error_line(err, "not edges2emoji nor a folder of image pairs")
    assert code != 0 and not (tmp_path / "run").exists()


def test_figure7_trains_a_row_with_table_1_s_module_and_draws_its_curve(tmp_path):
    """benchmarks/figure7.py: a row trained with the module of Table 1's Conv 3x3 preset (its parameter count), then
    measured over the rollout into a curve, a table and a plot."""
    import json
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "f7"
    args = [sys.executable, str(ROOT / "benchmarks" / "figure7.py"), "--train", "--rows", "conv3-mse", "--iters", "1",
            "--metric", "mse", "--trials", "2", "--every", "100", "--device", "cpu", "--out", str(out),
            "--set", "task.count=8", "--set", "task.test_fraction=0.25", "--set", "pool_size=8", "--set", "size=12",
            "--set", "padding=2"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "table.json").read_text())
    (r,) = doc["rows"]
    # the review's module: a full 3×3 convolution of 17 channels (16 + 1 input) to 80, then 80→80→16
    assert r["perception"] == "Conv 3x3" and r["parameters"] == 17 * 9 * 80 + 80 + 80 * 80 + 80 + 80 * 16 + 16
    steps = r["curve"]["mse"]["steps"]
    assert steps[0] == 0 and {100, 149, 150, 449} <= set(steps) and len(r["stages"]["mse"]["stages"]) == 3
    assert "| Conv 3x3 | mse |" in proc.stdout and (out / "figure7.png").stat().st_size > 1000
    from PIL import Image

    preview = Image.open(out / "conv3-mse" / "preview.png")  # inputs, 96 and 200 steps, targets: a band each
    band = preview.height // 4
    growth = Image.open(out / "growth.png")  # inputs, the model's 200 steps, targets, labelled in a margin
    assert growth.size == (200 + preview.width, 3 * band)
    assert (
        growth.crop((200, band, growth.width, 2 * band)).tobytes()
        == preview.crop((0, 2 * band, preview.width, 3 * band)).convert("RGB").tobytes()
    )
    alone = tmp_path / "alone.safetensors"  # no preview beside it: the table, and one line that says why no picture
    alone.write_bytes((out / "conv3-mse" / "model.safetensors").read_bytes())
    again = [*args[:2], str(alone), *args[7:-12], "--out", str(tmp_path / "f7b")]
    proc = subprocess.run(again, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "growth.png: not drawn" in proc.stderr and not (tmp_path / "f7b" / "growth.png").exists()
    bad = subprocess.run([*args[:4], "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "nope not among" in bad.stderr
