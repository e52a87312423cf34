"""Latent NCAs: the autoencoder, its two training stages (resumable), the model file that carries it, every verb
on a latent model, the emoji drawn from its SVG at any size, and the Table 2 benchmark rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import last_json, one_error_line, run_cli
from ncacli.engine.autoencoder import Autoencoder, AutoencoderConfig
from ncacli.errors import NcaError, Terminated

SMALL_AE = ["--set", "task.ae_iters=4", "--set", "task.width=4", "--set", "task.ae_batch=2",
            "--set", "task.codes=16"]  # fmt: skip
# a 32×32 picture (size 24 + 2·4), a 4×4 latent grid
RUN = ["--task", "latent", "--emoji", "🦎", "--size", "24", "--padding", "4", "--iters", "3", "--batch", "2",
       "--set", "steps_min=3", "--set", "steps_max=4", "--set", "pool_size=8", "--set", "hidden=16",
       "--set", "checkpoint_every=2", "--seed", "1", "--quiet", "--device", "cpu", *SMALL_AE]  # fmt: skip


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory):
    from ncacli.cli import main

    out = tmp_path_factory.mktemp("latent") / "run"
    assert main(["train", *RUN, "--out", str(out)]) == 0
    return out


def test_the_autoencoder_compresses_8x_and_decodes_rgba():
    for kind in ("vqvae", "ae"):
        ae = Autoencoder(AutoencoderConfig(kind=kind, width=4, codes=8))
        x = torch.rand(2, 4, 32, 48)
        z = ae.encode(x)
        assert z.shape == (2, 8, 4, 6)
        picture = ae.decode(z)
        assert picture.shape == (2, 4, 32, 48) and 0 <= picture.min() and picture.max() <= 1
        assert torch.all(picture[:, :3] <= picture[:, 3:4] + 1e-6)  # premultiplied
        out, vq = ae(x)
        assert out.shape == x.shape and (vq > 0) == (kind == "vqvae")


def test_vq_snaps_to_the_codebook_with_straight_through_gradients():
    ae = Autoencoder(AutoencoderConfig(width=4, codes=8))
    z = torch.randn(1, 8, 3, 3, requires_grad=True)
    q, index = ae.quantize(z)
    assert torch.allclose(q, ae.codebook[index].permute(0, 3, 1, 2), atol=1e-6)  # z + (q − z): one rounding
    q.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))


def test_autoencoder_tensors_that_do_not_match_are_refused():
    config = AutoencoderConfig(width=4, codes=8)
    tensors = Autoencoder(config).tensors()
    Autoencoder.from_tensors(config, tensors)
    with pytest.raises(ValueError, match="do not match"):
        Autoencoder.from_tensors(AutoencoderConfig(width=8, codes=8), {k: v for k, v in list(tensors.items())[1:]})
    with pytest.raises(ValueError, match="settings make"):
        Autoencoder.from_tensors(AutoencoderConfig(width=8, codes=8), tensors)


def test_large_emoji_are_drawn_from_the_svg_not_upscaled():
    from ncacli.io.images import emoji_path, image_to_rgba, load_target

    big, _ = load_target("", "🦎", 288, 0)
    assert big.shape == (4, 288, 288)
    png = image_to_rgba(emoji_path("🦎").read_bytes(), "png")  # the 72×72 Twemoji PNG
    down = torch.nn.functional.avg_pool2d(big[None], 4)[0]
    assert (down - png).abs().mean() < 0.03  # the same drawing (rasterisers differ in anti-aliasing)
    up = torch.nn.functional.interpolate(png[None], scale_factor=4, mode="bilinear", align_corners=False)[0]
    edges = lambda t: (t[3, :, 1:] - t[3, :, :-1]).abs().max()  # noqa: E731
    assert edges(big) > 2 * edges(up)  # sharp edges at 288 pixels: not a blurred 72-pixel picture
    small, _ = load_target("", "🦎", 40, 16)
    assert small.shape == (4, 72, 72)  # up to 72 pixels the PNG, as before (training results unchanged)


def test_a_latent_run_keeps_both_stages_and_its_model_carries_the_autoencoder(latent_run):
    import ncacli.api as nca

    for name in ("autoencoder.safetensors", "autoencoder-metrics.jsonl", "model.safetensors", "resume.safetensors"):
        assert (latent_run / name).is_file(), name
    lines = (latent_run / "autoencoder-metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["iteration"] for ln in lines] == [1, 2, 3, 4]
    model = nca.load(latent_run / "model.safetensors")
    assert model.spec.task.name == "latent" and model.spec.task.grid == [4, 4] and model.task.scale == 8
    assert model.spec.task.options["image"] == [32, 32]
    state = model.seed(2)
    assert state.shape == (2, 20, 4, 4)  # RGBA at the grid's resolution, 8 latent, 8 hidden
    assert state[0, :3].abs().sum() == 0 and state[0, 3:].sum() == 17  # Distill's seed: one cell
    empty = model.task.latents(torch.zeros_like(state))
    assert torch.equal(empty[0], model.task.tensors["task.empty"])  # a zero state is the empty picture
    grown = model.grow(4, state)
    picture = model.picture(grown)
    assert picture.shape == (2, 3, 32, 32)
    frame = model.task.frame(grown, None, 8)
    assert frame.shape == (32, 32, 3)


def test_damage_is_cut_in_pixels_and_re_encoded_or_in_the_latent_grid(latent_run):
    import ncacli.api as nca
    from ncacli.engine import damage_mask

    model = nca.load(latent_run / "model.safetensors")
    x = model.grow(4)
    cut = damage_mask(32, 32, "left", (0.5, 0.5), 0.2)
    model.task.damage_space = "pixel"
    pixel = model.task.erase(x, cut)  # the left half: latent cells in columns 0 and 1
    with torch.no_grad():
        again = model.task.autoencoder.encode(model.task.rgba(x) * ~cut) - model.task.tensors["task.empty"]
    assert torch.allclose(pixel[:, 4:12, :, :2], again[:, :, :, :2])  # the cut picture, encoded again
    assert pixel[:, :4, :, :2].abs().sum() == 0 and pixel[:, 12:, :, :2].abs().sum() == 0
    assert torch.equal(pixel[:, :, :, 2:], x[:, :, :, 2:])
    model.task.damage_space = "latent"
    latent = model.task.erase(x, cut)
    assert latent[:, :, :, :2].abs().sum() == 0  # the empty picture
    assert torch.equal(latent[:, :, :, 2:], x[:, :, :, 2:])


def test_every_verb_on_a_latent_model(capsys, tmp_path, latent_run):
    from PIL import Image

    model = latent_run / "model.safetensors"
    code, _, err = run_cli(capsys, "grow", model, "--steps", "5", "--out", tmp_path / "big.png")
    assert code == 0, err
    assert Image.open(tmp_path / "big.png").size == (32, 32)  # decoded
    code, _, err = run_cli(capsys, "grow", model, "--steps", "5", "--latent", "--out", tmp_path / "z.safetensors")
    assert code == 0, err
    from ncacli.io.state_file import parse_state

    state, _ = parse_state((tmp_path / "z.safetensors").read_bytes(), "z")
    assert state.shape == (1, 20, 4, 4)
    code, out, err = run_cli(capsys, "render", model, tmp_path / "v.gif", "--steps", "6", "--damage-at", "3", "--json")
    assert code == 0, err
    import imageio.v3 as iio

    assert iio.imread(tmp_path / "v.gif", index=0).shape[:2] == (32, 32)
    code, _, err = run_cli(capsys, "render", model, tmp_path / "p.html")
    assert code == 1 and not (tmp_path / "p.html").exists()
    one_error_line(err, "page", "latent", ".gif")
    for space in ("pixel", "latent"):
        code, out, err = run_cli(capsys, "evaluate", latent_run, "--trials", "2", "--metric", "mse", "--stage1", "2-3",
                                 "--stage2", "4", "--perturb-at", "5", "--final", "8", "--damage-space", space,
                                 "--json")  # fmt: skip
        assert code == 0, err
        doc = last_json(out)
        assert doc["protocol"]["damage_space"] == space and doc["grid"] == [4, 4]
        assert doc["metrics"]["mse"]["stage3"]["n"] == 2


def test_a_trained_autoencoder_is_reused_and_a_foreign_file_refused(capsys, tmp_path, latent_run):
    ae = latent_run / "autoencoder.safetensors"
    out = tmp_path / "again"
    code, _, err = run_cli(capsys, "train", *RUN, "--autoencoder", ae, "--out", out)
    assert code == 0, err
    assert not (out / "autoencoder-metrics.jsonl").exists()  # no stage 1
    from ncacli.io.files import read_input, unpack

    a, _ = unpack(read_input(str(ae)), "a")
    b, _ = unpack(read_input(str(out / "model.safetensors")), "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    code, _, err = run_cli(capsys, "train", *RUN, "--autoencoder", "docs/lizard.safetensors", "--out", tmp_path / "x")
    assert code == 1 and not (tmp_path / "x").exists()
    one_error_line(err, "docs/lizard.safetensors", "not an autoencoder")
    missing = tmp_path / "none.safetensors"
    code, _, err = run_cli(capsys, "train", *RUN, "--autoencoder", missing, "--out", tmp_path / "y")
    assert code == 1
    one_error_line(err, "none.safetensors", "not found", "--autoencoder")


def test_a_size_the_compression_does_not_divide_is_refused(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", *RUN, "--size", "26", "--out", tmp_path / "r")
    assert code == 2 and not (tmp_path / "r").exists()
    one_error_line(err, "34×34", "8× compression", "32×32", "40×40")


def test_a_damaged_autoencoder_in_a_model_file_is_one_line(capsys, tmp_path, latent_run):
    from ncacli.io.files import pack, read_input, unpack

    tensors, meta = unpack(read_input(str(latent_run / "model.safetensors")), "m")
    name = next(k for k in tensors if k.startswith("task.autoencoder.decoder"))
    tensors[name] = tensors[name][:1]
    (tmp_path / "bad.safetensors").write_bytes(pack(tensors, meta))
    code, _, err = run_cli(capsys, "grow", tmp_path / "bad.safetensors", "--out", tmp_path / "g.png")
    assert code == 1 and not (tmp_path / "g.png").exists()
    one_error_line(err, "bad.safetensors", "autoencoder")


def test_stage_one_resumes_where_it_stopped(tmp_path, monkeypatch):
    """An interrupted stage 1 taken up from its resume file ends with the weights of an uninterrupted one."""
    import ncacli.tasks.autoencoder as stage1

    monkeypatch.setattr(stage1, "CHECKPOINT_EVERY", 2)
    targets = torch.rand(1, 4, 16, 16)
    config = AutoencoderConfig(width=4, codes=8)
    args = dict(batch=2, lr=1e-3, seed=0, device=torch.device("cpu"), seed_positions=[[0.5, 0.5]])
    (tmp_path / "a").mkdir()
    whole = stage1.train_autoencoder(targets, config, tmp_path / "a", iters=6, **args)
    (tmp_path / "b").mkdir()
    stage1.train_autoencoder(targets, config, tmp_path / "b", iters=4, **args)
    (tmp_path / "b" / stage1.FINAL).unlink()  # as if stopped after iteration 4
    resumed = stage1.train_autoencoder(targets, config, tmp_path / "b", iters=6, **args)
    for (k, v), w in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    lines = (tmp_path / "b" / stage1.METRICS).read_text().splitlines()
    assert [json.loads(ln)["iteration"] for ln in lines] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(("stop", "exit_code"), [(KeyboardInterrupt, 130), (Terminated, 143)])
def test_a_run_stopped_in_stage_one_resumes_with_resume(capsys, tmp_path, monkeypatch, stop, exit_code):
    """Ctrl-C, or SIGTERM (what ``nca``'s handler raises for it), during the autoencoder's training."""
    import ncacli.tasks.autoencoder as stage1

    out = tmp_path / "run"
    calls = {"n": 0}
    real = stage1.augmented

    def interrupt_at_third(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise stop
        return real(*a, **k)

    monkeypatch.setattr(stage1, "augmented", interrupt_at_third)
    code, _, err = run_cli(capsys, "train", *RUN, "--out", out)
    assert code == exit_code and "interrupted at autoencoder iteration 2" in err and f"--resume {out}" in err
    assert (out / stage1.RESUME).is_file() and not (out / stage1.FINAL).exists()
    assert not (out / "model.safetensors").exists()
    monkeypatch.setattr(stage1, "augmented", real)
    code, _, err = run_cli(capsys, "train", "--resume", out, "--quiet")
    assert code == 0, err
    lines = (out / stage1.METRICS).read_text().splitlines()
    assert [json.loads(ln)["iteration"] for ln in lines] == [1, 2, 3, 4]
    assert (out / "model.safetensors").is_file()


def test_read_autoencoder_names_the_file():
    from ncacli.tasks.autoencoder import read_autoencoder

    with pytest.raises(NcaError, match="not found"):
        read_autoencoder("nowhere.safetensors")


def test_the_latent_suite_has_table_2s_rows_and_runs(tmp_path):
    from ncacli.bench import Settings, run_benchmark
    from ncacli.bench.case import Case
    from ncacli.bench.latent import latent_cases
    from ncacli.engine import NCA, ModelConfig

    rows = latent_cases()
    assert [(c.name, c.height, c.train_steps, c.latent, c.checkpoint) for c in rows] == [
        ("latent 256²", 32, 16, 8, None), ("latent 512²", 64, 32, 8, None), ("latent 1024²", 128, 64, 8, None),
        ("pixel 256²", 256, 128, 0, None), ("pixel 256² checkpointed", 256, 128, 0, 8),
    ]  # fmt: skip
    tiny = [Case("latent", "latent 32²", 4, 4, 1, 2, 1, 2, "test", latent=8),
            Case("latent", "pixel 16²", 16, 16, 1, 4, 1, 4, "test", checkpoint=2)]  # fmt: skip
    settings = Settings(torch.device("cpu"), repeats=1, warmup=1, max_seconds=None, max_memory=None)
    report = run_benchmark(NCA(ModelConfig()), tiny, settings)
    latent, pixel = report["rows"][0], report["rows"][2]
    assert latent["latent"]["picture"] == [32, 32] and latent["engine"]["status"] == "ok"
    assert latent["reference"]["status"] == "ok" and latent["max_abs_diff"] < 1e-4
    assert pixel["checkpoint"] == 2 and "latent" not in pixel
    assert np.isfinite(latent["engine"]["median_s"])


def test_a_loss_window_decodes_exactly_the_pixels_of_the_whole_picture():
    from ncacli.tasks.latent import WINDOW_MARGIN

    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig(width=8, kind="ae")).eval()
    z = torch.randn(1, 8, 20, 20)
    with torch.no_grad():
        whole = ae.decode(z)
        top, left, side, m = 6, 9, 5, WINDOW_MARGIN
        part = ae.decode(z[:, :, top - m : top + side + m, left - m : left + side + m])
    crop = part[:, :, m * 8 : (m + side) * 8, m * 8 : (m + side) * 8]
    # the same pixels; convolutions over grids of another size may sum in another order
    assert torch.allclose(crop, whole[:, :, top * 8 : (top + side) * 8, left * 8 : (left + side) * 8], atol=1e-5)


def test_a_conditional_latent_model_grows_each_class(capsys, tmp_path):
    import ncacli.api as nca

    flags = [a for a in RUN if a != "🦎" and a != "--emoji"]
    out = tmp_path / "two"
    code, _, err = run_cli(capsys, "train", *flags, "--emoji", "🦎", "--emoji", "🦋", "--out", out)
    assert code == 0, err
    model = nca.load(out / "model.safetensors")
    assert model.spec.model.condition_channels == 2 and model.task.target.shape == (2, 4, 32, 32)
    code, _, err = run_cli(capsys, "grow", out / "model.safetensors", "--condition", "1", "--out", tmp_path / "b.png")
    assert code == 0, err
    short = ["--trials", "2", "--stage1", "2-3", "--stage2", "4", "--perturb-at", "5", "--final", "8", "--json"]
    code, out_text, err = run_cli(capsys, "evaluate", out, "--perturb", "mutation", "-m", "mse", *short)
    assert code == 0, err
    assert [t["mutated_to"] for t in last_json(out_text)["trials"]] == [1, 0]


def test_the_autoencoder_option_names_the_latent_task(capsys, tmp_path):
    """`--autoencoder` without `--task`: the task that alone reads it (Task.train_options) is taken."""
    code, _, err = run_cli(capsys, "train", "--autoencoder", tmp_path / "none.safetensors", "--out", tmp_path / "r")
    assert code == 1
    one_error_line(err, "none.safetensors", "autoencoder file not found")


def test_stage_one_learns_a_data_set_beside_the_target_and_perturbed_copies_or_not(capsys, tmp_path, monkeypatch):
    """task.ae_data adds Twemoji (or a folder's pictures) to what stage 1 learns, each fitted into the target's
    grid; task.ae_perturb = false keeps stage 1 to the complete pictures."""
    import ncacli.tasks.autoencoder as stage
    from ncacli.io.images import twemoji_pictures
    from ncacli.tasks.autoencoder import FINAL

    seen = {}
    real = stage.train_autoencoder

    def spy(pictures, *args, **kwargs):
        seen["pictures"], seen["perturb"] = pictures, kwargs["perturb"]
        return real(pictures, *args, **kwargs)

    monkeypatch.setattr(stage, "train_autoencoder", spy)
    code, _, err = run_cli(capsys, "train", *RUN, "--set", "task.ae_data=twemoji", "--set", "task.ae_count=3",
                           "--out", tmp_path / "t")  # fmt: skip
    assert code == 0, err
    pictures = seen["pictures"]
    assert pictures.shape == (4, 4, 32, 32) and seen["perturb"] is True
    assert torch.equal(pictures[1:], twemoji_pictures(3, 24, 4, 0, "test")[0])  # the target first, then three emoji
    assert not torch.equal(pictures[0], pictures[1])
    folder = tmp_path / "pictures"
    folder.mkdir()
    from PIL import Image

    Image.new("RGBA", (60, 30), (255, 0, 0, 255)).save(folder / "wide.png")
    code, _, err = run_cli(capsys, "train", *RUN, "--set", f"task.ae_data={folder}", "--set", "task.ae_perturb=false",
                           "--out", tmp_path / "f")  # fmt: skip
    assert code == 0, err
    wide = seen["pictures"][1]
    assert seen["perturb"] is False and wide.shape == (4, 32, 32)
    assert wide[3, 16].sum() == 24 and wide[3, 4:28].sum() == 24 * 12  # 24×12, centred on the 32×32 grid, opaque
    x = torch.rand(3, 4, 8, 8)
    for perturb in (False, True):
        out = stage.augmented(x, 40, torch.Generator().manual_seed(0), [[0.5, 0.5]], perturb)
        whole = [any(torch.equal(o, p) for p in x) for o in out]
        assert all(whole) if not perturb else not all(whole)  # complete pictures alone, or perturbed ones too
    for args, needle in ((["--set", "task.ae_data=/nonexistent"], "neither twemoji nor a folder"),
                         (["--set", "task.ae_count=-1"], "ae_count"),
                         (["--set", "task.ae_data=twemoji", "--set", "task.ae_count=0"], "1 or more with task.ae_data"),
                         (["--set", "task.ae_data=twemoji", "--autoencoder", tmp_path / "t" / FINAL],
                          "task.ae_data is what stage 1 learns")):  # fmt: skip
        code, _, err = run_cli(capsys, "train", *RUN, *args, "--out", tmp_path / "bad")
        assert code == 2 and not (tmp_path / "bad").exists()
        one_error_line(err, needle)
