"""Fractal growth (the Fun with NCA report): the state upsampled as it grows, through the engine, the API and
the verbs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from conftest import ROOT, TINY, last_json, one_error_line, run_cli
from ncacli.engine import NCA, ModelConfig, make_seed
from ncacli.engine.zoom import (
    PEAK_MARGIN,
    Zoom,
    ZoomError,
    peak_bytes,
    resize_nearest,
    rollout_seconds,
    step_cost,
    zoom_rollout,
    zoom_state,
)
from ncacli.registry import TASKS

LIZARD = ROOT / "docs" / "lizard.safetensors"  # a 36×36 format-1 model


def tiny_nca(k: int = 0) -> NCA:
    torch.manual_seed(0)
    model = NCA(ModelConfig(channels=8, hidden=16, condition_channels=k))
    with torch.no_grad():  # a last layer that is not zero, so every step changes the state
        for p in model.update.parameters():
            p.normal_(0, 0.3)
    return model


# --- the engine ----------------------------------------------------------------------------------------


def test_nearest_copies_every_channel_into_a_block():
    x = torch.randn(2, 16, 5, 7)
    for factor in (2, 3.0):
        y = zoom_state(x, factor, "nearest")
        f = int(factor)
        assert y.shape == (2, 16, 5 * f, 7 * f)
        assert torch.equal(y, x.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3))
    odd = zoom_state(x, 1.5, "nearest")  # sides round(5·1.5) = 8 (round half to even), round(7·1.5) = 10
    assert odd.shape == (2, 16, 8, 10)
    columns = {tuple(c) for c in x.permute(0, 2, 3, 1).reshape(-1, 16).tolist()}
    assert all(tuple(c) in columns for c in odd.permute(0, 2, 3, 1).reshape(-1, 16).tolist())  # copies only


def test_bilinear_blends_between_cell_centres():
    x = torch.randn(1, 6, 4, 4)
    y = zoom_state(x, 2, "bilinear")
    assert y.shape == (1, 6, 8, 8)
    assert x.min() <= y.min() and y.max() <= x.max()  # a convex blend of the cells
    flat = zoom_state(torch.full((1, 6, 4, 4), 0.25), 2, "bilinear")
    assert torch.allclose(flat, torch.full_like(flat, 0.25), atol=1e-7)  # float rounding of the weights
    assert not torch.equal(y, zoom_state(x, 2, "nearest"))


def test_zoom_settings_are_checked():
    for kw, field in (({"factor": 1}, "factor"), ({"factor": 0.5}, "factor"), ({"every": 0}, "every"),
                      ({"times": 0}, "times"), ({"mode": "cubic"}, "mode")):  # fmt: skip
        with pytest.raises(ZoomError) as caught:
            Zoom(**kw)
        assert caught.value.field == field
    zoom = Zoom(2, 10, 3)
    assert zoom.at() == [10, 20, 30]
    assert zoom.grids(18, 24) == [(18, 24), (36, 48), (72, 96), (144, 192)]
    zoom.check(31)
    with pytest.raises(ZoomError, match="end at step 30"):
        zoom.check(30)  # the last zoom would never be grown at
    grids = Zoom(2, 1, 10**9).grids(36, 36, limit=10**6)  # 576² cells are under the limit, 1152² over
    assert len(grids) == 6 and grids[-1] == (1152, 1152)  # it stops there


def test_the_rollout_is_segments_with_the_state_zoomed_between():
    model, g = tiny_nca(k=2), torch.Generator()
    x = make_seed(1, 8, 6, 6)
    condition = torch.zeros(1, 2, 6, 6)
    condition[:, 0, :, :3] = 1  # a condition map: class 0 on the left, class 1 on the right
    condition[:, 1, :, 3:] = 1
    zoom = Zoom(2, 4, 2)
    with torch.no_grad():
        got = zoom_rollout(model, x, 11, zoom, g.manual_seed(3), condition=condition)
        g.manual_seed(3)
        want = model.rollout(x, 4, g, condition=condition)
        want = model.rollout(zoom_state(want, 2), 4, g, condition=resize_nearest(condition, (12, 12)))
        want = model.rollout(zoom_state(want, 2), 3, g, condition=resize_nearest(condition, (24, 24)))
    assert got.shape == (1, 8, 24, 24) and torch.equal(got, want)  # the same arithmetic in the same order

    seen, asked = [], []
    schedule = lambda step: asked.append(step) or condition  # noqa: E731
    with torch.no_grad():
        zoom_rollout(model, x, 11, zoom, g, lambda step, s: seen.append((step, s.shape[-1])), schedule)
    assert asked == list(range(1, 12))  # numbered over the whole rollout, not per segment
    assert seen == [(i, 6 if i <= 4 else 12 if i <= 8 else 24) for i in range(1, 12)]  # before each zoom


def test_a_grown_pattern_keeps_its_share_of_the_grid_through_the_zooms():
    """The lizard zoomed twice and three times: alive masking, computed from the zoomed state, keeps the
    pattern alive and in its silhouette (neither dying out nor flooding the larger grid), dead cells zero."""
    import ncacli.api as nca

    model = nca.load(LIZARD)
    shares = []
    for times in (2, 3):
        y = model.grow(130, model.seed(grid=(18, 18)), zoom=Zoom(2, 32, times))
        alive = model.nca.alive(y)
        assert y.shape[-1] == 18 * 2**times and (y * ~alive == 0).all()
        shares.append(float((y[:, 3] > model.nca.config.alive_threshold).float().mean()))
    assert 0.05 < shares[0] < 0.9 and 0.5 < shares[1] / shares[0] < 2, shares  # measured 0.46 and 0.46


def test_memory_and_time_estimates():
    model = tiny_nca()
    floats = 3 * 8 + 8 * 3 + 16  # state in, out and dx; sobel's 3 features a channel; hidden
    assert peak_bytes(model, 2, (10, 20)) == int(PEAK_MARGIN * 4 * floats * 2 * 200)
    zoom = Zoom(2, 10, 2)
    seconds = rollout_seconds(zoom, 25, zoom.grids(4, 4), 1, (0.5, 0.01))
    assert seconds == pytest.approx(10 * (0.5 + 0.16) + 10 * (0.5 + 0.64) + 5 * (0.5 + 2.56))
    x = make_seed(1, 8, 8, 8)
    fixed, per_cell = step_cost(model, x, Zoom(2, 1, 2).grids(8, 8))  # timed at 8² and 32²
    assert fixed >= 0 and per_cell > 0 and torch.equal(x, make_seed(1, 8, 8, 8))  # the state left as it was


def test_zoom_is_a_capability_of_the_picture_tasks():
    """Only tasks whose state is a picture of the grid: not a classifier's, a video's or a latent code's (the
    latent task, a subclass of the image task, must not inherit the word)."""
    zoomable = {name for name, task in TASKS.items() if "zoom" in task.capabilities}
    assert {"image", "text", "texture"} <= zoomable and not zoomable & {"classify", "video", "latent", "pixels"}


# --- the API and the verbs -----------------------------------------------------------------------------


def test_the_api_grows_and_films_a_zoom():
    import ncacli.api as nca

    model = nca.load(LIZARD)
    zoom = Zoom(2, 6, 2)
    state = model.grow(15, model.seed(grid=(12, 12)), zoom=zoom)
    assert state.shape == (1, 16, 48, 48) and torch.isfinite(state).all()
    frames = nca.frames(model, 15, every=5, scale=3, state=model.seed(grid=(12, 12)), zoom=zoom)
    assert len(frames) == 4 and {f.shape for f in frames} == {(36, 36, 3)}  # the display keeps its size
    with pytest.raises(ZoomError, match="end at step 12"):
        model.grow(12, zoom=zoom)


def test_grow_reports_the_grid_after_each_zoom(capsys, tmp_path):
    out = tmp_path / "fractal.png"
    args = ["grow", LIZARD, "--grid", "18", "--zoom", "2", "--zoom-every", "8", "--zooms", "3", "-n", "30"]
    code, stdout, err = run_cli(capsys, *args, "--out", out, "--json")
    assert code == 0, err
    summary = last_json(stdout)
    assert summary["zoom"]["grids"] == [[18, 18], [36, 36], [72, 72], [144, 144]]
    assert summary["zoom"]["zoom_at"] == [8, 16, 24] and summary["shape"] == [1, 16, 144, 144]
    assert summary["zoom"]["peak_bytes"] > 0 and summary["zoom"]["seconds"] > 0
    assert Image.open(out).size == (144, 144)
    line = [ln for ln in err.splitlines() if ln.startswith("zoom:")]
    assert len(line) == 1 and "18×18 → 36×36 → 72×72 → 144×144" in line[0] and "peak memory" in line[0]
    state = tmp_path / "fractal.safetensors"
    code, _, err = run_cli(capsys, *args, "--zoom-mode", "bilinear", "--out", state)
    from ncacli.io.state_file import parse_state

    grown, step = parse_state(state.read_bytes(), "state")
    assert code == 0 and grown.shape == (1, 16, 144, 144) and step == 30


def test_render_keeps_the_picture_size_as_the_grid_grows(capsys, tmp_path):
    out = tmp_path / "fractal.gif"
    code, stdout, err = run_cli(
        capsys, "render", LIZARD, out, "--grid", "12", "--zoom", "2", "--zoom-every", "6", "--zooms", "2",
        "-n", "15", "--every", "3", "--scale", "4", "--damage-at", "13", "--json",
    )  # fmt: skip
    assert code == 0, err
    summary = last_json(stdout)
    assert summary["frames"] == 6 and summary["zoom"]["grids"] == [[12, 12], [24, 24], [48, 48]]
    frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(out))]
    assert len(frames) == 6 and {f.shape for f in frames} == {(48, 48, 3)}


def test_bad_zoom_options_are_one_line_and_write_nothing(capsys, tmp_path):
    out = tmp_path / "x.png"
    for extra, needle in (
        (["--zoom", "1"], "--zoom 1: the grid must grow"),
        (["--zoom", "0.5"], "--zoom 0.5"),
        (["--zoom", "2", "--zooms", "0"], "--zooms 0"),
        (["--zoom", "2", "--zoom-every", "0"], "--zoom-every 0"),
        (["--zoom", "2", "--zoom-mode", "cubic"], "--zoom-mode cubic: choose nearest or bilinear"),
        (["--zooms", "2"], "--zooms goes with --zoom"),
        (["--zoom-every", "5"], "--zoom-every goes with --zoom"),
        (["--zoom", "2", "--zooms", "3", "-n", "100"], "--steps 100: 3 zoom(s) every 64 steps end at step 192"),
    ):
        for verb in (["grow", LIZARD, "--out", out], ["render", LIZARD, tmp_path / "x.gif"]):
            code, _, err = run_cli(capsys, *verb, *extra)
            assert code == 2, (extra, err)
            one_error_line(err, needle)
    code, _, err = run_cli(capsys, "render", LIZARD, tmp_path / "x.html", "--zoom", "2")
    one_error_line(err, "--zoom is for videos")
    assert not list(tmp_path.iterdir())


def test_a_last_grid_that_cannot_fit_is_refused_before_it_is_made(capsys, tmp_path, monkeypatch):
    import ncacli.bench.system as system

    out = tmp_path / "x.png"
    monkeypatch.setattr(system, "available_memory", lambda device: 10**9)
    # the lizard's 16 channels, sobel and hidden 128: 1.5 · 4 · 224 bytes a cell; 576² fits in 1 GB, 1152² not
    code, _, err = run_cli(capsys, "grow", LIZARD, "--zoom", "2", "--zoom-every", "1", "--zooms", "30",
                           "-n", "31", "--device", "cpu", "--out", out)  # fmt: skip
    assert code == 1
    one_error_line(err, "--zooms 30: zoom 5 makes a 1152×1152 grid that needs about 1.78 GB; 1 GB is free on cpu")
    monkeypatch.undo()  # the machine's own memory: 2^60 times the cells cannot fit anywhere
    code, _, err = run_cli(capsys, "render", LIZARD, tmp_path / "x.gif", "--zoom", "2", "--zoom-every", "1",
                           "--zooms", "60", "-n", "61", "--device", "cpu")  # fmt: skip
    assert code == 1
    one_error_line(err, "--zooms 60", "grid that needs about", "free on cpu")
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from ncacli.cli import main

    out = tmp_path_factory.mktemp("runs") / "classify"
    flags = ["--data", "digits", "--set", "batch=4", "--set", "task.fresh=1", "--set", "mutation_count=1"]
    assert main(["train", "--task", "classify", "--iters", "2", "--out", str(out), *TINY, *flags]) == 0
    return out / "model.safetensors"


def test_models_whose_state_is_not_a_picture_are_refused(capsys, tmp_path, classifier, monkeypatch):
    code, _, err = run_cli(capsys, "render", classifier, tmp_path / "x.gif", "--zoom", "2", "-n", "70")
    assert code == 2
    one_error_line(err, "--zoom scales a picture of the grid", "'classify'")
    code, _, err = run_cli(capsys, "grow", classifier, "--zoom", "2", "--out", tmp_path / "x.png")
    assert code == 2
    one_error_line(err, "a classifier runs on an input")
    from ncacli.tasks.image import ImageTask

    monkeypatch.setattr(ImageTask, "capabilities", frozenset({"page"}))  # a task that does not say "zoom"
    code, _, err = run_cli(capsys, "grow", LIZARD, "--zoom", "2", "--out", tmp_path / "x.png")
    assert code == 2
    one_error_line(err, "--zoom scales a picture of the grid", "'image'")
    assert not list(tmp_path.iterdir())
