"""`nca render TRANSLATOR e2e.html`: a translation model's page in headless Chromium, against the engine.

The page reads its input per cell from an edge map (held-out pair #0 to start with) that the mouse draws and
erases, grows the picture from the seed, and shows it with the drawn edges over it; alt-drag cuts the cells. As in
``test_page_classify.py``, the page is opened paused with a fixed fire-mask seed and its steps compared cell for
cell with ``model.rollout(state, N, CounterRandom(seed), condition=input)``. Needs Playwright and Chromium
(skipped without them unless ``NCA_REQUIRE_BROWSER=1``).
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch

import test_page
from conftest import one_error_line, run_cli, trained_and_stirred
from ncacli.engine import CounterRandom
from test_page import TOLERANCE, Page
from test_page_classify import brush, distance_to, page_input, stroke
from test_translate import SHRUNK

chromium_browser = pytest.fixture(scope="module", name="browser")(test_page.browser.__wrapped__)
SEED = 5
RADIUS = 1.5  # the brush of test_page_classify's helpers, in cells


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    """A tiny edges2emoji model (its last layer stirred so every step changes the state) and its page written by
    `nca render`. → ``(model file, page, model)``"""
    from ncacli.api import load
    from ncacli.cli import main

    run = trained_and_stirred(
        tmp_path_factory.mktemp("tr") / "e2e", "--task", "translate", "--data", "edges2emoji", *SHRUNK
    )
    model_file = run / "model.safetensors"
    page = run / "e2e.html"
    assert main(["render", str(model_file), str(page), "--json"]) == 0
    return model_file, page, load(model_file)


def rollout(model, x: torch.Tensor, steps: int, condition: torch.Tensor, calls: int = 0) -> torch.Tensor:
    with torch.no_grad():
        return model.nca.rollout(x, steps, CounterRandom(SEED, calls=calls), condition=condition)


def view(page: Page) -> torch.Tensor:
    """The canvas at each cell's centre: ``(3, H, W)`` in [0, 1]."""
    from PIL import Image

    h, w = page.page.evaluate("nca.grid()")
    url = page.page.evaluate("document.getElementById('view').toDataURL('image/png')")
    png = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    shot = np.asarray(png, dtype=np.float32)
    scale = shot.shape[0] // h
    return torch.from_numpy(shot[scale // 2 :: scale, scale // 2 :: scale][:h, :w] / 255.0).permute(2, 0, 1)


def over_white(model, state: torch.Tensor) -> torch.Tensor:
    rgba = model.task.rgba(state)[0].clamp(0, 1)
    return (1 - rgba[3:] + rgba[:3]).clamp(0, 1)


def test_the_page_grows_the_picture_of_its_input_like_the_engine(browser, translator):
    _, path, model = translator
    page = Page(browser, path, seed=SEED)
    inp = page_input(page)
    test = model.task.test_index()
    assert torch.equal(inp, model.task.condition(test[:1]))  # held-out pair #0's edges, exactly
    assert page.page.locator("#example option").all_inner_texts()[1].startswith("#0 ")
    assert page.page.locator("#legend").is_hidden() and page.page.locator("#prediction-box").is_hidden()
    seed = model.seed()
    assert torch.equal(page.state(), seed)
    done = 0
    for n in (4, 8):
        page.step(n)
        done += n
        got, want = page.state(), rollout(model, seed, done, inp)
        assert (got - want).abs().max().item() < TOLERANCE, done
        assert (want - seed).abs().max() > 0.05, "the steps should change the state"
    # the input steers the growth: without its edges the same steps give another state
    assert (rollout(model, seed, done, torch.zeros_like(inp)) - want).abs().max() > 0.01
    # the view: the picture over white, and where an edge is drawn the edge's blue over it
    shown, picture = view(page), over_white(model, got)
    plain = inp[0, 0] == 0
    assert plain.sum() > 10 and (shown[:, plain] - picture[:, plain]).abs().max() < 1.5 / 255
    edged = inp[0, 0] == 1
    blue = torch.tensor([0.15, 0.35, 0.85])[:, None]
    assert edged.sum() > 5 and (shown[:, edged] - (0.4 * picture[:, edged] + 0.6 * blue)).abs().max() < 2 / 255
    page.clean()


def test_drawing_edges_changes_the_input_and_alt_drag_cuts_the_cells(browser, translator):
    _, path, model = translator
    page = Page(browser, path, seed=SEED)
    h, w = page.page.evaluate("nca.grid()")
    page.page.locator("#brush").fill(str(RADIUS))
    page.step(6)
    state, before = page.state(), page_input(page)
    a, b = (3.6, 7.4), (12.2, 9.2)  # across the middle, where the cells live
    stroke(page, a, b)
    after = page_input(page)
    d = distance_to(h, w, a, b)
    changed = (after != before)[0, 0]
    assert changed.sum() >= 10 and torch.all(d[changed] < RADIUS + 0.05), "only within the brush"
    assert torch.all(after[0, 0][d < RADIUS / 3 - 0.05] == 1.0), "a full edge along the stroke"
    assert (after - torch.maximum(before, brush(d))).abs().max() < 0.05
    assert torch.equal(page.state(), state), "drawing leaves the cells alone"
    assert page.page.locator("#example").input_value() == ""
    page.step(5)
    got, want = page.state(), rollout(model, state, 5, after, calls=6)
    assert (got - want).abs().max().item() < TOLERANCE
    assert (want - rollout(model, state, 5, before, calls=6)).abs().max() > 0.01, "the new edges are read"
    # shift-drag erases edges
    before = after
    page.page.keyboard.down("Shift")
    stroke(page, a, b)
    page.page.keyboard.up("Shift")
    after = page_input(page)
    assert torch.all(after <= before) and torch.all(after[0, 0][d < RADIUS / 3 - 0.05] == 0.0)
    # alt-drag cuts the cells along its path and leaves the input alone
    state, before = page.state(), after
    c, e = (2.0, 8.0), (14.0, 8.0)  # across the living middle
    page.page.keyboard.down("Alt")
    stroke(page, c, e)
    page.page.keyboard.up("Alt")
    assert torch.equal(page_input(page), before)
    cut = page.state()
    near = distance_to(h, w, (8.0, 8.0), (8.0, 8.0)) < RADIUS - 0.05  # the middle's circle, on the path
    assert torch.all(cut[0, :, near] == 0) and state[0, :, near].abs().sum() > 0
    far = distance_to(h, w, c, e) > RADIUS + 0.05
    assert torch.equal(cut[0, :, far], state[0, :, far])
    # Clear leaves no edge; an example brings its pair's input back
    page.page.click("#clear")
    assert page_input(page).abs().sum() == 0
    page.page.select_option("#example", "2")
    assert torch.equal(page_input(page), model.task.condition(model.task.test_index()[2:3]))
    page.clean()


def test_the_page_starts_from_the_input_asked_for(capsys, browser, translator, tmp_path):
    model_file, _, model = translator
    out = tmp_path / "two.html"
    code, _, err = run_cli(capsys, "render", model_file, out, "--input", "#1")
    assert code == 0, err
    page = Page(browser, out, seed=SEED)
    assert torch.equal(page_input(page), model.task.condition(model.task.test_index()[1:2]))
    page.clean()
    code, _, err = run_cli(capsys, "render", model_file, tmp_path / "bad.html", "--input", "#99")
    one_error_line(err, "#99")
    assert code != 0 and not (tmp_path / "bad.html").exists()
