"""`nca render CLASSIFIER digits.html`: a self-classifying model's page in headless Chromium, against the engine.

The page reads its condition per cell from an input image (the first test image of class 0 to start with) that
the mouse draws and erases; only the cells where the input's first channel exceeds the threshold live. As in
``test_page.py``, the page is opened paused with a fixed fire-mask seed, so its steps are compared cell for cell
with ``model.rollout(state, N, CounterRandom(seed), condition=input)``. Needs Playwright and Chromium (skipped
without them unless ``NCA_REQUIRE_BROWSER=1``).
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch

import test_page
from conftest import one_error_line, run_cli
from ncacli.engine import CounterRandom
from test_page import HALF_TOLERANCE, TOLERANCE, Page, wait_until

# test_page's headless Chromium (skipped without one, unless NCA_REQUIRE_BROWSER=1), one for this module
chromium_browser = pytest.fixture(scope="module", name="browser")(test_page.browser.__wrapped__)
SEED = 5
RADIUS = 1.5  # the brush of the drawing tests, in cells


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A tiny digit classifier trained through the CLI, its last layer given small random weights (so every
    step changes the state), and its page written by `nca render`. → ``(model file, page)``"""
    from ncacli.api import load
    from ncacli.cli import main
    from ncacli.io.model_file import save_model

    out = tmp_path_factory.mktemp("classify")
    args = ["train", "--preset", "classify-digits", "--iters", "3", "--size", "10", "--padding", "2"]
    args += ["--set", "hidden=16", "--set", "pool_size=16", "--set", "batch=4", "--set", "task.fresh=1"]
    args += ["--set", "mutation_count=1", "--seed", "1", "--device", "cpu", "--quiet", "--out", str(out / "run")]
    assert main(args) == 0
    m = load(out / "run" / "model.safetensors")
    torch.manual_seed(0)
    with torch.no_grad():  # as test_page.random_model: updates of about ±0.1
        last = [c for c in m.nca.update.net if isinstance(c, torch.nn.Conv2d)][-1]
        last.weight.normal_(0.0, 0.5 / last.weight[0].numel() ** 0.5)
        last.bias.normal_(0.0, 0.02)
    model_file = out / "random.safetensors"
    save_model(m.nca, m.spec, model_file, m.provenance, m.task.saved_tensors())
    page = out / "digits.html"
    assert main(["render", str(model_file), str(page), "--json"]) == 0
    return model_file, page


@pytest.fixture(scope="module")
def model(classifier):
    from ncacli.api import load

    return load(classifier[0])


def page_input(page: Page) -> torch.Tensor:
    """The page's input as a condition ``(1, K, H, W)``."""
    h, w = page.page.evaluate("nca.grid()")
    values = np.array(page.page.evaluate("nca.input()"), dtype=np.float32)
    return torch.from_numpy(values.reshape(h, w, -1)).permute(2, 0, 1)[None]


def rollout(model, x: torch.Tensor, steps: int, condition: torch.Tensor, calls: int = 0) -> torch.Tensor:
    with torch.no_grad():
        return model.nca.rollout(x, steps, CounterRandom(SEED, calls=calls), condition=condition)


def class_means(model, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
    """The class channels' mean over the living cells (ClassifyTask.predict before its argmax) → ``(K,)``."""
    mask = model.task.cells(condition)
    return ((x[:, : model.task.k] * mask).sum((2, 3)) / mask.sum((2, 3)).clamp_min(1.0))[0]


def to_client(page: Page, x: float, y: float) -> tuple[float, float]:
    h, w = page.page.evaluate("nca.grid()")
    box = page.page.locator("#view").bounding_box()
    return box["x"] + x / w * box["width"], box["y"] + y / h * box["height"]


def stroke(page: Page, a, b, button: str = "left") -> None:
    """A drag from cell coordinates ``a`` to ``b``."""
    page.page.mouse.move(*to_client(page, *a))
    page.page.mouse.down(button=button)
    page.page.mouse.move(*to_client(page, *b), steps=10)
    page.page.mouse.up(button=button)


def distance_to(h: int, w: int, a, b) -> torch.Tensor:
    """Each cell centre's distance to the segment ``a``–``b`` (cell coordinates, x then y) → ``(H, W)``."""
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    (x0, y0), (x1, y1) = a, b
    dx, dy = x1 - x0, y1 - y0
    t = (((xs - x0) * dx + (ys - y0) * dy) / max(dx * dx + dy * dy, 1e-12)).clamp(0, 1)
    return torch.hypot(xs - (x0 + t * dx), ys - (y0 + t * dy))


def brush(d: torch.Tensor) -> torch.Tensor:
    """The ink the page's brush lays at distance ``d`` from its path: full within a third of its radius,
    fading linearly to nothing at the radius."""
    return (1.5 * (1 - d / RADIUS)).clamp(0, 1)


def dead_are_zero(model, state: torch.Tensor, condition: torch.Tensor) -> bool:
    dead = ~model.task.cells(condition).bool()
    return bool(torch.all(state * dead == 0))


def test_the_page_steps_like_the_engine_on_its_input(browser, classifier, model):
    page = Page(browser, classifier[1], seed=SEED)
    h, w = page.page.evaluate("nca.grid()")
    inp = page_input(page)
    first = model.task.condition(model.task.examples()[:1])
    assert torch.equal(inp, first)  # class 0's first test image, exactly
    zeros = model.seed()
    assert torch.equal(page.state(), zeros)
    done = 0
    for n in (3, 5, 12):
        page.step(n)
        done += n
        got, want = page.state(), rollout(model, zeros, done, inp)
        error = (got - want).abs().max().item()
        assert error < TOLERANCE, (done, error)
        assert want.abs().max() > 0.05, "the steps should change the state"
        assert dead_are_zero(model, got, inp)
        assert (got[0, :, inp[0, 0] > 0.1].abs().sum(0) > 0).float().mean() > 0.5, "the living cells have fired"
    # the input's values, not only its mask, steer the update: the same mask with full ink evolves otherwise
    binary = (inp > model.nca.config.alive_threshold).float()
    assert (rollout(model, zeros, done, binary) - want).abs().max() > 0.01
    page.clean()


def test_a_float16_state_stays_close(browser, classifier, model):
    """Where float32 targets are missing the state is float16; the input stays float32 (it is only read)."""
    page = Page(browser, classifier[1], seed=SEED, options="&float16")
    assert page.page.evaluate("nca.format") == "float16"
    inp = page_input(page)
    page.step(20)
    got, want = page.state(), rollout(model, model.seed(), 20, inp)
    assert 0 < (got - want).abs().max().item() < HALF_TOLERANCE
    assert dead_are_zero(model, got, inp)
    page.clean()


def test_drawing_and_erasing_change_only_the_input_where_the_brush_went(browser, classifier, model):
    page = Page(browser, classifier[1], seed=SEED)
    h, w = page.page.evaluate("nca.grid()")
    threshold = model.nca.config.alive_threshold
    page.page.locator("#brush").fill(str(RADIUS))
    page.step(6)
    steps = 6
    state, before = page.state(), page_input(page)
    # draw a stroke under the digit, where there is no ink
    a, b = (1.6, 12.4), (12.2, 12.7)
    stroke(page, a, b)
    after = page_input(page)
    d = distance_to(h, w, a, b)
    changed = (after != before)[0, 0]
    assert changed.sum() >= 10 and torch.all(d[changed] < RADIUS + 0.05), "only within the brush"
    assert torch.all(after[0, 0][d < RADIUS / 3 - 0.05] == 1.0), "full ink along the stroke"
    assert (after - torch.maximum(before, brush(d))).abs().max() < 0.05, "a soft brush: ink fading to its edge"
    assert torch.all(after >= before) and after.min() >= 0 and after.max() <= 1
    assert torch.equal(page.state(), state), "drawing leaves the state alone"
    assert page.page.locator("#example").input_value() == ""  # no longer an example
    # the evolution reads the new input: new cells live, grown from zero, step for step as the engine
    page.step(6)
    got, want = page.state(), rollout(model, state, 6, after, calls=steps)
    steps += 6
    assert (got - want).abs().max().item() < TOLERANCE
    born = (after[0, 0] > threshold) & (before[0, 0] <= threshold)
    assert born.sum() >= 10 and (got[0, :, born].abs().sum(0) > 0).float().mean() > 0.5
    assert (want - rollout(model, state, 6, before, calls=6)).abs().max() > 0.01
    # shift-drag erases across the digit, and so does a drag with the right button
    state, before = got, after
    a, b = (2.0, 6.5), (12.0, 6.5)
    page.page.keyboard.down("Shift")
    stroke(page, a, b)
    page.page.keyboard.up("Shift")
    c, e = (7.5, 1.5), (7.5, 11.5)
    stroke(page, c, e, button="right")
    after = page_input(page)
    d = torch.minimum(distance_to(h, w, a, b), distance_to(h, w, c, e))
    changed = (after != before)[0, 0]
    assert changed.sum() >= 10 and torch.all(d[changed] < RADIUS + 0.05)
    assert torch.all(after <= before) and torch.all(after[0, 0][d < RADIUS / 3 - 0.05] == 0.0)
    assert (after - torch.minimum(before, 1 - brush(d))).abs().max() < 0.05
    assert torch.equal(page.state(), state)
    page.step(4)
    got, want = page.state(), rollout(model, state, 4, after, calls=steps)
    assert (got - want).abs().max().item() < TOLERANCE
    died = (after[0, 0] <= threshold) & (before[0, 0] > threshold)
    assert died.sum() >= 5 and torch.all(got[0, :, died] == 0) and dead_are_zero(model, got, after)
    page.clean()


def test_the_prediction_is_the_engines(browser, classifier, model):
    page = Page(browser, classifier[1], seed=SEED)
    names = model.spec.task.classes
    x, steps = model.seed(), 0
    for example in (0, 1, 7):
        page.page.select_option("#example", str(example))  # that class's first test image
        inp = page_input(page)
        assert torch.equal(inp, model.task.condition(model.task.examples()[example : example + 1]))
        x = rollout(model, x, 8, inp, calls=steps)
        page.step(8)
        steps += 8
        want = class_means(model, x, inp)
        got = torch.tensor(page.page.evaluate("nca.votes()"))
        assert (got - want).abs().max().item() < TOLERANCE
        top2 = want.topk(2).values
        assert top2[0] - top2[1] > 4 * TOLERANCE, "no near tie: the argmax is the same on both sides"
        predicted = int(model.task.predict(x, inp))
        assert page.page.evaluate("nca.prediction()") == predicted
        assert page.page.locator("#prediction").inner_text() == names[predicted]
    # a Clear leaves no ink, no prediction, and no living cell after the next step
    page.page.click("#clear")
    assert page_input(page).abs().sum() == 0
    assert page.page.evaluate("nca.prediction()") is None
    assert page.page.locator("#prediction").inner_text() == "–"
    page.step(1)
    assert page.state().abs().sum() == 0
    page.clean()


def test_the_view_and_the_legend_show_the_votes(browser, classifier, model):
    from PIL import Image

    from ncacli.tasks.classify import PALETTE

    page = Page(browser, classifier[1], seed=SEED)
    names = model.spec.task.classes
    assert page.page.locator("#legend .name").all_inner_texts() == names
    swatches = page.page.locator("#legend .swatch").evaluate_all("s => s.map(e => getComputedStyle(e).backgroundColor)")
    css = [f"rgb({', '.join(str(int(v * 255 + 0.5)) for v in PALETTE[i % len(PALETTE)])})" for i in range(len(names))]
    assert swatches == css
    h, w = page.page.evaluate("nca.grid()")

    def view() -> torch.Tensor:
        """The canvas at each cell's centre: ``(3, H, W)`` in [0, 1]."""
        url = page.page.evaluate("document.getElementById('view').toDataURL('image/png')")
        png = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
        shot = np.asarray(png, dtype=np.float32)
        scale = shot.shape[0] // h
        return torch.from_numpy(shot[scale // 2 :: scale, scale // 2 :: scale][:h, :w] / 255.0).permute(2, 0, 1)

    # at the start every class channel is 0: a tie, which argmax gives the first class, as torch's does
    state, inp = page.state(), page_input(page)
    assert state.abs().sum() == 0
    assert (view() - model.task.picture(state, inp)[0]).abs().max().item() < 1.5 / 255
    stroke(page, (1.6, 12.4), (12.2, 12.7))  # some ink of its own, fading at the brush's edge
    page.step(10)
    state, inp = page.state(), page_input(page)
    want = model.task.picture(state, inp)[0]  # (3, H, W) the picture of the page's own state and input
    assert (view() - want).abs().max().item() < 1.5 / 255
    assert (want < 0.99).any(dim=0).sum() > 20, "the living cells are coloured"
    page.clean()


def test_render_a_classifier_page(capsys, tmp_path, classifier, model, monkeypatch):
    model_file, page = classifier
    text = page.read_text(encoding="utf-8")
    data = json.loads(text.split('id="nca-data">', 1)[1].split("</script>", 1)[0])
    names = model.spec.task.classes
    assert data["task"] == "classify" and data["classes"] == names and len(data["palette"]) == len(names)
    assert data["program"]["alive_from"] == "input" and data["program"]["condition_channels"] == 1
    assert [e["class"] for e in data["examples"]] == names
    assert data["input"]["about"]["class"] == "0" and "<title>nca · digits (10 classes)</title>" in text
    # --condition names the digit it starts from; a larger grid centres the image in it
    out = tmp_path / "three.html"
    code, stdout, _ = run_cli(capsys, "render", model_file, out, "--condition", "3", "--grid", "18", "--json")
    assert code == 0 and json.loads(stdout)["input"]["class"] == "3"
    data = json.loads(out.read_text(encoding="utf-8").split('id="nca-data">', 1)[1].split("</script>", 1)[0])
    image = torch.tensor(data["input"]["image"])
    want = model.task.condition(torch.tensor([model.task.image_of("3")]))[0]
    assert image.shape == (1, 18, 18) and torch.equal(image[:, 2:16, 2:16], want)
    image[:, 2:16, 2:16] = 0
    assert torch.all(image == 0)
    code, _, err = run_cli(capsys, "render", model_file, tmp_path / "small.html", "--grid", "8")
    assert code == 2
    one_error_line(err, "--grid", "14x14")
    code, _, err = run_cli(capsys, "render", model_file, tmp_path / "x.html", "--condition", "eleven")
    assert code == 2
    one_error_line(err, "eleven")
    # a task without the page capability is still refused in one line
    from ncacli.tasks.classify import ClassifyTask

    monkeypatch.setattr(ClassifyTask, "capabilities", frozenset())
    code, _, err = run_cli(capsys, "render", model_file, tmp_path / "none.html")
    assert code == 1
    one_error_line(err, "does not show", "classify")
    assert not (tmp_path / "none.html").exists()


def test_a_classifier_page_runs_by_itself(browser, classifier, model):
    page = Page(browser, classifier[1], seed=SEED)
    page.page.locator("#speed").fill("4")
    page.page.click("#pause")  # resumes
    wait_until(page.page, "nca.steps >= 20")
    page.page.click("#pause")  # pauses again
    steps = page.page.evaluate("nca.steps")
    page.page.click("#step")
    assert page.page.evaluate("nca.steps") == steps + 1
    predicted = page.page.evaluate("nca.prediction()")
    assert page.page.locator("#prediction").inner_text() == model.spec.task.classes[predicted]
    assert page.page.locator("#prediction-box").is_visible() and page.page.locator("#class-label").is_hidden()
    page.clean()
