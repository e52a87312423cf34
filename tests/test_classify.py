"""The classify task: data sources, the split kept in the model file, evaluation with an input swap, the video."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import last_json, one_error_line, run_cli, trained_and_stirred

SHRUNK = ["--iters", "4", "--size", "8", "--padding", "1", "--seed", "1", "--quiet", "--device", "cpu",
          "--set", "hidden=16", "--set", "pool_size=16", "--set", "batch=4", "--set", "task.fresh=1",
          "--set", "mutation_count=1", "--set", "checkpoint_every=2"]  # fmt: skip


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A classifier trained 4 iterations on the bundled digits, its last layer given small random weights so
    that its cells vote (an untrained NCA leaves its state at zero)."""
    return trained_and_stirred(
        tmp_path_factory.mktemp("cls") / "digits", "--task", "classify", "--data", "digits", *SHRUNK
    )


def test_the_model_file_keeps_the_test_split(classifier):
    from ncacli.io.datasets import load_labelled
    from ncacli.io.model_file import load

    loaded = load(str(classifier / "model.safetensors"))
    spec = loaded.spec
    assert spec.task.name == "classify" and spec.task.classes == [str(i) for i in range(10)]
    assert spec.model.alive_from == "input" and spec.model.condition_channels == 1
    test = loaded.tensors["task.test_index"]
    data = load_labelled("digits", 8, 1, 0.2, 0)
    assert torch.equal(test, data.test) and len(test) == round(1797 * 0.2)
    assert not set(test.tolist()) & set(data.train.tolist())


@pytest.mark.parametrize("index", [torch.tensor([0.5, 1.5]), torch.tensor([[1, 2]]), torch.tensor([3, -1])])
def test_a_damaged_test_split_is_refused_in_one_line(capsys, classifier, tmp_path, index):
    from ncacli.io.model_file import load, save_model

    loaded = load(str(classifier / "model.safetensors"))
    bad = tmp_path / "bad.safetensors"
    save_model(loaded.model, loaded.spec, bad, loaded.provenance, {**loaded.tensors, "task.test_index": index})
    code, _, err = run_cli(capsys, "evaluate", bad, "--trials", "2")
    one_error_line(err, str(bad), "test split is not a list of sample indices")
    assert code != 0


def test_evaluate_reports_accuracy_at_the_stages_and_the_recovery_after_a_swap(capsys, classifier):
    code, out, err = run_cli(capsys, "evaluate", classifier, "--trials", "24", "--final", "200", "--json")
    assert code == 0, err
    doc = last_json(out)
    assert doc["task"] == "classify" and doc["protocol"]["perturb"] == "mutation"
    assert doc["protocol"]["stage1"] == [20, 30] and doc["protocol"]["trials"] == 24
    for name in ("pixel_accuracy", "image_accuracy"):
        m = doc["metrics"][name]
        assert all(0.0 <= m[s]["mean"] <= 1.0 for s in ("stage1", "stage2", "perturbed", "stage3"))
    swapped = [t for t in doc["trials"] if t["mutated_to"] != t["class"]]
    assert len(swapped) == 24  # every input swapped for one of another class
    assert "pixel_accuracy" in err and "20–30" in err


def test_evaluate_measures_what_the_engine_computes(classifier):
    """Image accuracy at the last step, recomputed by hand from a rollout of the same test images."""
    import ncacli.api as nca

    model = nca.load(classifier / "model.safetensors")
    doc = nca.evaluate(model, perturb="none", trials=16, stage2=20, perturb_at=30, final=40, seed=5)
    task, data = model.task, model.task.load_data()
    images = task.test_index()[:16]
    x = model.grow(40, model.seed(16), 5, data.images[images])
    right = (task.predict(x, data.images[images]) == data.labels[images]).float().mean().item()
    assert doc["metrics"]["image_accuracy"]["stage3"]["mean"] == pytest.approx(right)


def test_a_perturbation_the_task_has_not_is_one_line(capsys, classifier):
    code, _, err = run_cli(capsys, "evaluate", classifier, "--perturb", "damage")
    assert code == 2
    one_error_line(err, "--perturb damage", "mutation, none")


def test_render_shows_the_votes_and_switches_the_input(capsys, classifier, tmp_path):
    out = tmp_path / "votes.gif"
    code, stdout, err = run_cli(
        capsys, "render", classifier / "model.safetensors", out, "--input", "7", "--switch-at", "10",
        "--input-to", "3", "--steps", "20", "--scale", "8", "--json",
    )  # fmt: skip
    assert code == 0, err
    summary = last_json(stdout)
    assert summary["input"]["class"] == "7" and summary["input_to"]["class"] == "3" and summary["frames"] == 21
    frames = []
    with Image.open(out) as gif:
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB")))
    assert frames[0].shape[1] == 10 * 8 and frames[0].shape[0] > 10 * 8  # the grid, and a legend below it
    first, last = frames[0][: 10 * 8], frames[-1][: 10 * 8]  # (Pillow merges repeated frames: count no frames)
    inked = lambda f: (f.min(axis=2) < 250)[4::8, 4::8]  # noqa: E731  the cells the ink darkens (centres)
    import ncacli.api as nca

    task = nca.load(classifier / "model.safetensors").task
    for frame, name in ((first, "7"), (last, "3")):
        live = task.cells(task.condition(torch.tensor([task.image_of(name)])))[0, 0].numpy() > 0
        assert np.array_equal(inked(frame), live), name  # the 7, then the 3


def test_data_from_a_folder_and_offline_mnist(capsys, tmp_path, monkeypatch):
    for k, name in enumerate(["bars", "rings"]):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(6):
            img = np.full((12, 12), 255, np.uint8)
            img[:, 3 + i % 3 : 6 + i % 3] = 0 if k == 0 else 255
            if k == 1:
                img[3:9, 3:9], img[5:7, 5:7] = 0, 255
            Image.fromarray(img).save(tmp_path / "data" / name / f"{i}.png")
    code, out, err = run_cli(capsys, "train", "--data", tmp_path / "data", "--out", tmp_path / "run", *SHRUNK)
    assert code == 0, err
    info = json.loads(run_cli(capsys, "info", tmp_path / "run" / "model.safetensors", "--json")[1].splitlines()[-1])
    assert info["spec"]["task"]["classes"] == ["bars", "rings"] and info["task_tensors"]["task.test_index"] == [2]
    monkeypatch.setenv("NCA_DATA", str(tmp_path / "empty"))
    code, _, err = run_cli(capsys, "train", "--data", "mnist", "--out", tmp_path / "m", *SHRUNK)
    one_error_line(err, "mnist", str(tmp_path / "empty"), "MNIST/raw", "--data DIR")
    assert code == 1 and not (tmp_path / "m").exists()
