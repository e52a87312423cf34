"""Steps per second of the interactive page in headless Chromium, at several grid sizes.

    python benchmarks/page_speed.py [MODEL] --grid 72 --grid 256

Writes `nca render MODEL page.html --grid N` for each size (MODEL defaults to a model of the Distill
architecture, 16 channels, sobel, 128 hidden, with random weights: the same work as a trained one), opens it from
disk in Chromium (Debian's ``chromium``, or ``--chromium PATH``), runs warm-up steps, then times
``--steps`` steps with the GPU finished at both ends (one pixel read back) and prints a Markdown table:
steps/s and cell-steps/s, median of ``--repeats``. Chromium's WebGL renderer is named in the table:
on a machine without a GPU it is SwiftShader, a CPU implementation.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="model file (default: an untrained Distill-architecture model)")
    parser.add_argument("--grid", type=int, action="append", help="grid side, repeatable (default 72 and 256)")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    opts = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    grids = opts.grid or [72, 256]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        model = opts.model or str(Path(tmp) / "distill.safetensors")
        if opts.model is None:
            import torch

            from ncacli.engine import NCA, ModelConfig
            from ncacli.io.model_file import save_model

            torch.manual_seed(0)
            net = NCA(ModelConfig())
            with torch.no_grad():  # an untrained model's last layer is zero, which renderers may short-cut
                for p in net.update.parameters():
                    p.normal_(0.0, 0.5 / p[0].numel() ** 0.5 if p.dim() == 4 else 0.02)
            save_model(net, Path(model), {"grid": [72, 72]})
        browser = pw.chromium.launch(
            executable_path=opts.chromium, args=["--no-sandbox", "--enable-unsafe-swiftshader"]
        )
        for side in grids:
            page_file = Path(tmp) / f"page{side}.html"
            cmd = [sys.executable, "-m", "ncacli", "render", model, str(page_file), "--grid", str(side)]
            subprocess.run(cmd, check=True, capture_output=True)
            page = browser.new_page()
            page.goto(page_file.resolve().as_uri() + "#paused&seed=1")
            while not page.evaluate("() => Boolean(window.nca && window.nca.ready)"):  # the CSP forbids eval
                time.sleep(0.05)
            renderer = page.evaluate(
                """() => { const gl = document.getElementById('view').getContext('webgl2');
                const ext = gl.getExtension('WEBGL_debug_renderer_info');
                return ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER); }"""
            )
            page.evaluate(f"nca.benchmark({max(4, opts.steps // 8)})")  # warm-up: shaders compiled and run
            rates = [page.evaluate(f"nca.benchmark({opts.steps})") for _ in range(opts.repeats)]
            rate = statistics.median(rates)
            rows.append((side, rate, rate * side * side, page.evaluate("nca.format"), renderer))
            print(f"{side}×{side}: {rate:.1f} steps/s", file=sys.stderr, flush=True)
            page.close()
        browser.close()
    print("| grid | steps/s | cell-steps/s | state textures | WebGL renderer |")
    print("|---|---|---|---|---|")
    for side, rate, cells, fmt, renderer in rows:
        print(f"| {side}×{side} | {rate:.1f} | {cells:.3g} | {fmt} | {renderer} |")


if __name__ == "__main__":
    main()
