"""Latent inpainting: scikit-image's faces, holes made transparent and encoded as the start, both stages, the
evaluation in the hole and over the picture beside the autoencoder and biharmonic inpainting, the verbs on the
model file, resume, and one line for each bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import last_json, one_error_line, run_cli

# 20 faces at 16×16, an autoencoder of 2 levels (4×): a 4×4 latent grid
RUN = ["--preset", "latent-inpaint", "--size", "16", "--iters", "3", "--batch", "4", "--seed", "1", "--quiet",
       "--device", "cpu", "--set", "steps_min=4", "--set", "steps_max=6", "--set", "pool_size=8",
       "--set", "hidden=16", "--set", "channels=12", "--set", "checkpoint_every=2", "--set", "task.count=20",
       "--set", "task.test_fraction=0.25", "--set", "task.width=4", "--set", "task.codes=16",
       "--set", "task.ae_iters=3", "--set", "task.ae_batch=2", "--set", "task.latent=4"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from ncacli.cli import main

    out = tmp_path_factory.mktemp("inpaint") / "run"
    assert main(["train", *RUN, "--out", str(out)]) == 0
    return out


def test_faces_are_scikit_image_s_lfw_subset_as_opaque_squares():
    from ncacli.io.datasets import load_pictures

    p = load_pictures("faces", 32, 0, 0.1, 0)
    assert p.images.shape == (100, 4, 32, 32) and bool((p.images[:, 3] == 1).all())
    assert bool((p.images[:, 0] == p.images[:, 1]).all())  # grey
    assert len(p.test) == 10 and not set(p.test.tolist()) & set(p.train.tolist())
    assert "Labeled Faces in the Wild" in p.source


def test_a_state_starts_from_the_masked_picture_encoded(run):
    import ncacli.api as nca

    model = nca.load(run / "model.safetensors")
    task = model.task
    assert model.spec.task.grid == [4, 4] and not model.spec.model.alive_masking
    pictures = task.load_data().images[task.test_index()[:2]]
    holes = task.holes(2, torch.Generator().manual_seed(0))
    assert 0 < holes.float().mean() < 0.5
    x = task.starts(pictures, holes)
    masked = pictures * ~holes
    assert torch.allclose(x[:, 4:8] + task.empty()[None], task.autoencoder.encode(masked), atol=1e-6)
    assert torch.allclose(x[:, :4], torch.nn.functional.avg_pool2d(masked, 4)) and bool((x[:, 8:] == 0).all())


def test_the_evaluation_compares_the_nca_with_the_autoencoder_and_biharmonic_inpainting(capsys, run):
    code, out, err = run_cli(capsys, "evaluate", run, "--trials", "3", "--final", "5", "--json")
    assert code == 0, err
    doc = last_json(out)
    assert set(doc["methods"]) == {"masked", "autoencoder", "nca", "biharmonic"} and doc["steps"] == 5
    for method in doc["methods"].values():
        assert method["hole_mse"]["n"] == 3 and set(method) == {"hole_mse", "mse", "psnr", "ssim"}
    # biharmonic inpainting fills a hole far better than leaving it transparent
    assert doc["methods"]["biharmonic"]["hole_mse"]["mean"] < 0.5 * doc["methods"]["masked"]["hole_mse"]["mean"]
    code, _, err = run_cli(capsys, "evaluate", run, "--perturb", "damage")
    one_error_line(err, "--perturb damage", "none")


def test_the_verbs_show_a_held_out_face_with_its_hole(capsys, tmp_path, run):
    model = run / "model.safetensors"
    code, _, err = run_cli(capsys, "render", model, tmp_path / "i.gif", "--steps", "4")
    assert code == 0, err
    with Image.open(tmp_path / "i.gif") as gif:
        assert gif.n_frames == 5 and gif.size[0] == 3 * gif.size[1]  # masked | NCA | complete
    code, _, err = run_cli(capsys, "grow", model, "--steps", "3", "--out", tmp_path / "g.png")
    assert code == 0, err
    Image.new("RGB", (30, 20), "red").save(tmp_path / "wide.png")  # not the model's 16×16: refused, not resized
    for flag in ("--input", "--mask"):
        code, _, err = run_cli(capsys, "render", model, tmp_path / "w.gif", "--steps", "2", flag, tmp_path / "wide.png")
        one_error_line(err, "wide.png: 30×20 pixels", "16×16", f"{flag} picture")
        assert not (tmp_path / "w.gif").exists()
    Image.new("RGB", (16, 16), "red").save(tmp_path / "face.png")
    code, out, err = run_cli(
        capsys, "render", model, tmp_path / "f.gif", "--steps", "2", "--image", tmp_path / "face.png", "--json"
    )  # --image: another name of --input
    assert code == 0, err
    assert last_json(out)["input"] == str(tmp_path / "face.png")
    with Image.open(tmp_path / "f.gif") as gif:
        first = np.asarray(gif.convert("RGB"))
    side = first.shape[0]
    assert tuple(first[2, side * 2 + 2]) == (255, 0, 0)  # the complete picture, right: the file's red
    assert tuple(first[side // 2, side // 2]) == (255, 255, 255)  # the hole, left: transparent over white
    code, _, err = run_cli(capsys, "grow", model, "--input", "#9", "--out", tmp_path / "n.png")
    one_error_line(err, "--input #9", "#0 … #4")
    mask = np.zeros((16, 16, 3), np.uint8)
    mask[:, :4] = 255  # a hole of one's own: the left quarter
    Image.fromarray(mask).save(tmp_path / "mask.png")
    for given, hole in ((str(tmp_path / "mask.png"), (4, 16)), ("right", (8, 16))):
        code, out, err = run_cli(capsys, "render", model, tmp_path / "m.gif", "--steps", "1", "--input",
                                 tmp_path / "face.png", "--mask", given, "--json")  # fmt: skip
        assert code == 0, err
        with Image.open(tmp_path / "m.gif") as gif:
            masked = np.asarray(gif.convert("RGB"))[:, :side]
        white = (masked == 255).all(-1)  # transparent over white: the hole; the rest the file's red
        cols = white.any(0).nonzero()[0]
        assert white.mean() == pytest.approx(hole[0] / hole[1], abs=0.02) and (cols[0] == 0) == (given != "right")
    for picture, words in (("black", "no white pixel"), ("white", "all white")):
        Image.new("RGB", (16, 16), picture).save(tmp_path / "bad.png")
        code, _, err = run_cli(capsys, "grow", model, "--mask", tmp_path / "bad.png", "--out", tmp_path / "b.png")
        one_error_line(err, "--mask", words)
        assert not (tmp_path / "b.png").exists()
    code, _, err = run_cli(capsys, "grow", model, "--mask", "hexagon", "--out", tmp_path / "b.png")
    one_error_line(err, "--mask hexagon", "circle")
    code, _, err = run_cli(capsys, "grow", "lizard", "--mask", "circle", "--out", tmp_path / "b.png")
    one_error_line(err, "--mask")
    code, _, err = run_cli(capsys, "render", model, tmp_path / "p.html")
    one_error_line(err, "page")
    code, out, err = run_cli(capsys, "train", "--resume", run, "--iters", "4", "--quiet")
    assert code == 0, err
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [1, 2, 3, 4] and "guide" in lines[-1]


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        (["task.hole_max=0.6"], "hole_max"),
        (["task.hole_min=0"], "hole_min"),
        (["alive_masking=true"], "alive_masking = false"),
        (["task.data=celeba", "task.data_root=/nonexistent"], "celeba: not in /nonexistent"),
    ],
)
def test_bad_inputs_are_one_line_and_write_nothing(capsys, tmp_path, sets, needle):
    args = [word for s in sets for word in ("--set", s)]
    code, _, err = run_cli(capsys, "train", *RUN, *args, "--out", tmp_path / "r")
    assert code != 0
    one_error_line(err, needle)
    assert not (tmp_path / "r").exists()


def test_data_names_the_task_or_goes_to_the_preset_s(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", *RUN, "--data", "celeba", "--out", tmp_path / "c")
    one_error_line(err, "celeba: not in", "--data DIR")
    args = [a for a in RUN if a not in ("--preset", "latent-inpaint")]
    code, out, err = run_cli(capsys, "train", "--data", "faces", *args, "--out", tmp_path / "f")
    assert code == 0, err
    assert 'name = "latent-inpaint"' in (tmp_path / "f" / "config.toml").read_text()


def test_a_size_the_autoencoder_does_not_divide_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", *RUN, "--size", "18", "--out", tmp_path / "r")
    one_error_line(err, "18×18", "4× compression")
