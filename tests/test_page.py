"""`nca render MODEL out.html`: the page in a real headless Chromium, against the engine.

Every page here is opened from disk (``file://``), paused, with a fixed fire-mask seed: the page draws
its masks from the same counter-based hash as ``CounterRandom``, so N steps in the browser are compared
cell for cell with ``model.rollout(seed, N, CounterRandom(seed))``. Needs Playwright and a Chromium
(Debian's ``chromium``; ``NCA_CHROMIUM`` names another); without them these tests are skipped, unless
``NCA_REQUIRE_BROWSER=1`` (as in ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY, one_error_line, run_cli
from ncacli.engine import NCA, CounterRandom, ModelConfig, apply_damage, damage_mask, make_seed, one_hot
from ncacli.engine.learned_perception import CombinedPerception, ConvPerception, ScaledConvPerception
from ncacli.engine.perception import PERCEPTIONS, register_perception
from ncacli.io.model_file import save_model

TOLERANCE = 1e-3  # float32 on the GPU against float32 on the CPU; seen: up to 2e-5 after 24 steps
HALF_TOLERANCE = 0.02  # a float16 state (13 mantissa bits fewer); seen: up to 3e-3 after 24 steps
GRID = (14, 14)


def chromium() -> str | None:
    return os.environ.get("NCA_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )


@pytest.fixture(scope="module")
def browser():
    required = os.environ.get("NCA_REQUIRE_BROWSER") == "1"
    path = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        path = None
    if path is None:
        if required:
            pytest.fail("NCA_REQUIRE_BROWSER=1 but Playwright or Chromium is missing (apt-get install chromium)")
        pytest.skip("needs Playwright and Chromium (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=["--no-sandbox", "--enable-unsafe-swiftshader"])
        yield b
        b.close()


class Page:
    """An exported page open in a browser (or a browser context), with everything it logged and requested."""

    def __init__(self, browser, path: Path, seed: int = 7, options: str = "") -> None:
        from playwright.sync_api import Browser

        size = {"width": 800, "height": 800}
        self.page = browser.new_page(viewport=size) if isinstance(browser, Browser) else browser.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.url = path.resolve().as_uri()
        self.page.goto(f"{self.url}#paused&seed={seed}{options}")
        wait_until(self.page, "window.nca && window.nca.ready")

    def state(self) -> torch.Tensor:
        h, w = self.page.evaluate("nca.grid()")
        values = np.array(self.page.evaluate("nca.read()"), dtype=np.float32)
        return torch.from_numpy(values.reshape(h, w, -1)).permute(2, 0, 1)[None]

    def step(self, n: int) -> None:
        self.page.evaluate(f"nca.step({n})")

    def clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.requests == [self.url], self.requests  # the page itself, nothing else
        self.page.close()


def wait_until(page, expression: str, timeout: float = 30.0) -> None:
    """Poll ``expression`` from outside the page: the page's CSP forbids the eval that
    ``wait_for_function`` relies on once it has to poll."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({expression})"):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


def random_model(perception: str = "sobel", **options) -> NCA:
    torch.manual_seed(0)
    model = NCA(ModelConfig(perception=perception, hidden=24, **options))
    with torch.no_grad():
        for p in model.update.parameters():  # features of any size give updates of about ±0.1
            p.normal_(0.0, 0.5 / p[0].numel() ** 0.5 if p.dim() == 4 else 0.02)
        last = [p for p in model.update.parameters() if p.dim() == 1][-1]
        last[3] = 0.06  # alpha grows: the pattern spreads over the grid within the test's steps
    return model


def export(model: NCA, tmp_path: Path, name: str, provenance: dict | None = None) -> Path:
    """A model file written as training writes it, then `nca render FILE page.html` through the CLI."""
    model_file = tmp_path / f"{name}.safetensors"
    save_model(model, model_file, {"grid": list(GRID), "seed_positions": [[0.5, 0.5]], **(provenance or {})})
    page = tmp_path / f"{name}.html"
    from ncacli.cli import main

    assert main(["render", str(model_file), str(page), "--json"]) == 0
    return page


def engine(model: NCA, x: torch.Tensor, steps: int, seed: int, condition=None) -> torch.Tensor:
    with torch.no_grad():
        return model.rollout(x, steps, CounterRandom(seed), condition=condition)


def plugin(name: str, factory) -> str:
    if name not in PERCEPTIONS:
        register_perception(name, factory)
    return name


VARIANTS = {
    "sobel": lambda: random_model(),
    "sobel_laplacian circular tanh depth 2": lambda: random_model(
        "sobel_laplacian", padding_mode="circular", update_tanh=True, depth=2
    ),
    "sobel5 residual update": lambda: random_model("sobel5", update="residual", depth=3),
    "sobel_diagonal fire 1": lambda: random_model("sobel_diagonal", fire_rate=1.0),
    "conv": lambda: random_model("conv"),
    "conv full dilated": lambda: random_model(
        plugin("page_conv_full", lambda c, padding: ConvPerception(c, padding, mode="full", dilation=2))
    ),
    "conv separable 5x5": lambda: random_model(
        plugin("page_conv_sep", lambda c, padding: ConvPerception(c, padding, kernel_size=5, mode="separable"))
    ),
    "conv_scaled per feature": lambda: random_model(
        plugin("page_scaled", lambda c, padding: ScaledConvPerception(c, padding, per_feature=True))
    ),
    "combined": lambda: random_model("combined"),
    "combined with residual circular": lambda: random_model(
        plugin(
            "page_combined",
            lambda c, padding: CombinedPerception(c, padding, parts=[{"kind": "residual"}, {"dilation": 2}]),
        ),
        padding_mode="circular",
    ),
    "residual": lambda: random_model("residual"),
    "10 channels, signal diffusion": lambda: random_model(channels=10, signal_channels=2, signal_steps=2),
    "24 channels (two passes per step)": lambda: random_model(channels=24),
    "no alive masking": lambda: random_model(alive_masking=False),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_page_steps_like_the_engine(browser, tmp_path, variant):
    model = VARIANTS[variant]()
    page = Page(browser, export(model, tmp_path, "model"), seed=7)
    start = page.state()
    seed = make_seed(1, model.config.channels, *GRID)
    assert torch.equal(start, seed)
    page.step(24)
    got, want = page.state(), engine(model, seed, 24, 7)
    assert (want[0, 3] > 0.1).sum() > 9, "the pattern should have grown beyond the seed's 3×3"
    assert (got - want).abs().max().item() < TOLERANCE
    page.clean()


def test_float16_state_stays_close(browser, tmp_path):
    """Where a browser cannot render to float32 the page keeps the state in float16 textures."""
    model = random_model()
    page = Page(browser, export(model, tmp_path, "half"), seed=7, options="&float16")
    assert page.page.evaluate("nca.format") == "float16"
    page.step(24)
    error = (page.state() - engine(model, make_seed(1, 16, *GRID), 24, 7)).abs().max().item()
    assert 0 < error < HALF_TOLERANCE
    page.clean()


def test_a_conditional_page_switches_class(browser, tmp_path):
    model = random_model(condition_channels=3)
    classes = ["emoji 🦎", "emoji 🦋", "emoji 🐞"]
    page = Page(browser, export(model, tmp_path, "cond", {"classes": classes}), seed=3)
    assert page.page.locator("#class option").all_inner_texts() == classes
    x = make_seed(1, model.config.channels, *GRID)
    page.step(10)
    page.page.select_option("#class", "2")
    page.step(10)
    schedule = lambda step: one_hot(torch.tensor([0 if step <= 10 else 2]), 3)  # noqa: E731
    want = engine(model, x, 20, 3, schedule)
    assert (page.state() - want).abs().max().item() < TOLERANCE
    assert (want - engine(model, x, 20, 3, one_hot(torch.tensor([0]), 3))).abs().max() > 0.01
    page.clean()


@pytest.fixture(scope="module")
def lizard_page(tmp_path_factory) -> Path:
    """A lizard model trained briefly through the CLI, and its page written by `nca render`."""
    from ncacli.cli import main

    out = tmp_path_factory.mktemp("page")
    args = ["train", "--emoji", "🦎", "--preset", "regenerating", "--iters", "30", "--out", str(out / "run"), *TINY]
    assert main(args) == 0
    page = out / "lizard.html"
    assert main(["render", str(out / "run" / "model.safetensors"), str(page), "--scale", "20"]) == 0
    return page


def test_erase_by_mouse_then_regrow(browser, lizard_page):
    from ncacli.io.model_file import load

    loaded = load(str(lizard_page.parent / "run" / "model.safetensors"))
    model, positions = loaded.model, loaded.spec.task.seed_positions
    page = Page(browser, lizard_page, seed=11)
    h, w = page.page.evaluate("nca.grid()")
    page.step(40)
    grown = page.state()
    alive = grown[0, 3] > 0.1
    assert alive.sum() > 9
    # a click at the middle of the living cells erases a disc of the brush's radius around it
    ys, xs = torch.nonzero(alive, as_tuple=True)
    cx, cy = xs.float().mean().item() + 0.25, ys.float().mean().item() + 0.25
    page.page.locator("#brush").fill("3")
    box = page.page.locator("#view").bounding_box()
    page.page.mouse.click(box["x"] + cx / w * box["width"], box["y"] + cy / h * box["height"])
    cut = page.state()
    hole = damage_mask(h, w, "circle", (cx / w, cy / h), 3 / w)
    assert torch.equal(cut, apply_damage(grown, hole))
    assert (grown * hole).abs().sum() > 0, "the click should have erased living cells"
    # it regrows, step for step as the engine does from the same cut state, and continues the same masks
    page.step(60)
    regrown = page.state()
    key = CounterRandom(11, calls=40)
    with torch.no_grad():
        want = model.rollout(cut, 60, key)
    assert (regrown - want).abs().max().item() < TOLERANCE
    assert ((regrown[0, 3] > 0.1) & hole[0, 0]).sum() > 0, "living cells should grow back into the hole"
    # a drag erases along its path: every cell within the brush of where the pointer went
    page.step(10)
    before = page.state()
    (x0, y0), (x1, y1) = (1.25, 2.25), (w - 2.75, h - 3.75)
    page.page.mouse.move(box["x"] + x0 / w * box["width"], box["y"] + y0 / h * box["height"])
    page.page.mouse.down()
    page.page.mouse.move(box["x"] + x1 / w * box["width"], box["y"] + y1 / h * box["height"], steps=12)
    page.page.mouse.up()
    dragged = page.state()
    ends = damage_mask(h, w, "circle", [(x0 / w, y0 / h), (x1 / w, y1 / h)], 3 / w).any(0, keepdim=True)
    assert torch.all(dragged * ends == 0) and dragged.abs().sum() < before.abs().sum()
    kept = dragged != 0
    assert torch.equal(dragged[kept], before[kept])  # erasing only clears cells
    # a double-click plants a seed: the cell's alpha and hidden channels are 1
    page.page.mouse.dblclick(box["x"] + 0.5 / w * box["width"], box["y"] + 0.5 / h * box["height"])
    planted = page.state()
    assert torch.all(planted[0, 3:, 0, 0] == 1.0) and torch.all(planted[0, :3, 0, 0] == 0.0)
    # the buttons: step once, reset to the seed, resume
    before = page.page.evaluate("nca.steps")
    page.page.click("#step")
    assert page.page.evaluate("nca.steps") == before + 1
    page.page.click("#reset")
    assert page.page.evaluate("nca.steps") == 0
    assert torch.equal(page.state(), make_seed(1, model.config.channels, h, w, positions))
    page.page.locator("#speed").fill("8")
    page.page.click("#pause")  # resumes: the page was opened paused
    wait_until(page.page, "nca.steps >= 40")
    wait_until(page.page, "document.getElementById('readout').textContent.includes('steps/s')")
    page.clean()


def test_screenshot(browser, tmp_path, lizard_page):
    """The picture of docs/page.md: a grown pattern with a bite erased by the mouse, regrowing.

    ``NCA_PAGE_MODEL`` picks the model (default: this file's briefly trained lizard) and
    ``NCA_PAGE_SCREENSHOT`` where the PNG goes (default: a temporary file)."""
    from ncacli.cli import main

    model = os.environ.get("NCA_PAGE_MODEL") or str(lizard_page.parent / "run" / "model.safetensors")
    html = tmp_path / "shot.html"
    assert main(["render", model, str(html), "--scale", "12", "--title", "nca render MODEL page.html"]) == 0
    page = Page(browser, html, seed=1)
    page.step(200)
    h, w = page.page.evaluate("nca.grid()")
    ys, xs = torch.nonzero(page.state()[0, 3] > 0.5, as_tuple=True)
    upper = ys < ys.float().median()
    box = page.page.locator("#view").bounding_box()
    x, y = xs[upper].float().mean().item() + 0.5, ys[upper].float().mean().item() + 0.5  # a bite from the upper half
    page.page.locator("#brush").fill(str(max(2, round(w * 0.12))))
    page.page.mouse.click(box["x"] + x / w * box["width"], box["y"] + y / h * box["height"])
    page.step(4)
    page.page.evaluate("() => document.activeElement.blur()")
    shot = os.environ.get("NCA_PAGE_SCREENSHOT") or str(tmp_path / "page.png")
    bottom = page.page.locator("#hint").bounding_box()
    page.page.screenshot(path=shot, clip={"x": 0, "y": 0, "width": 800, "height": bottom["y"] + bottom["height"] + 16})
    assert Path(shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page.clean()


def test_touch_erases_and_a_double_tap_plants(browser, lizard_page):
    context = browser.new_context(has_touch=True, viewport={"width": 800, "height": 800})
    opened = Page(context, lizard_page, seed=2)
    page = opened.page
    page.evaluate("nca.step(30)")
    h, w = page.evaluate("nca.grid()")
    box = page.locator("#view").bounding_box()
    at = lambda x, y: (box["x"] + x / w * box["width"], box["y"] + y / h * box["height"])  # noqa: E731
    alpha = lambda: np.array(page.evaluate("nca.read()")).reshape(h, w, -1)[..., 3]  # noqa: E731
    before = alpha()
    ys, xs = np.nonzero(before > 0.1)
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
    page.touchscreen.tap(*at(cx, cy))
    after = alpha()
    assert before[int(cy), int(cx)] != 0 and after[int(cy), int(cx)] == 0 and (after > 0.1).sum() < (before > 0.1).sum()
    page.wait_for_timeout(400)  # not a double tap
    page.touchscreen.tap(*at(1.5, 1.5))
    page.touchscreen.tap(*at(1.5, 1.5))
    assert alpha()[1, 1] == 1.0
    opened.clean()
    context.close()


def test_page_file_is_self_contained(lizard_page):
    text = lizard_page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text and "<link" not in text
    assert "default-src 'none'" in text  # and the browser may not fetch anything either
    data = text.split('id="nca-data">', 1)[1].split("</script>", 1)[0]
    program = json.loads(data)["program"]
    assert program["channels"] == 16 and program["fire_rate"] == 0.5


def test_render_page_options_and_errors(capsys, tmp_path, lizard_page):
    model = lizard_page.parent / "run" / "model.safetensors"
    out = tmp_path / "big.html"
    code, stdout, _ = run_cli(
        capsys, "render", model, out, "--grid", "40x30", "--scale", "3", "--title", "A <b>", "--json"
    )
    assert code == 0
    summary = json.loads(stdout)
    assert summary["grid"] == [40, 30] and summary["scale"] == 3
    text = out.read_text(encoding="utf-8")
    assert "<title>A &lt;b&gt;</title>" in text and '"grid": [40, 30]' in text
    code, _, err = run_cli(capsys, "render", model, tmp_path / "x.html", "--damage-at", "5")
    assert code == 2
    one_error_line(err, "--damage-at", "videos")
    code, _, err = run_cli(capsys, "render", model, tmp_path / "x.gif", "--steps-per-frame", "4")
    assert code == 2
    one_error_line(err, "pages")
    code, _, err = run_cli(capsys, "render", model, tmp_path / "x.html", "--grid", "7y")
    assert code == 2
    one_error_line(err, "--grid")
    torch.manual_seed(0)
    attention = tmp_path / "attention.safetensors"
    save_model(NCA(ModelConfig(perception="attention")), attention, {})
    code, _, err = run_cli(capsys, "render", attention, tmp_path / "a.html")
    assert code == 1
    one_error_line(err, "attention", ".gif")
    assert not (tmp_path / "a.html").exists()
