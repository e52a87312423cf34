"""`benchmarks/gpu_check.py`: its dry run on the CPU runs every part a CPU can, with real figures; without CUDA
it refuses in one line; a part that fails or times out leaves the others running; the parts find the package
when it is only on PYTHONPATH."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
CUDA_ONLY = {"cuda_checks"}


def load_gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


gpu_check = load_gpu_check()
PARTS = list(gpu_check.PARTS)
DEFAULT = [name for name in PARTS if name not in gpu_check.OPT_IN]  # what a run without --parts runs


def run_check(
    *args: str, env: dict[str, str] | None = None, python: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *python, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        timeout=240,
    )


def read(out: Path) -> tuple[dict[str, Any], str]:
    return json.loads((out / "gpu-check.json").read_text(encoding="utf-8")), (out / "gpu-check.md").read_text()


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("gpu") / "check"
    return run_check("--dry-run", "--out", str(out)), out


def test_the_dry_run_runs_every_part_a_cpu_can(dry_run):
    proc, out = dry_run
    assert proc.returncode == 0, proc.stderr
    doc, md = read(out)
    assert doc["dry_run"] is True and doc["plan"]["device"] == "cpu" and doc["finished"]
    assert list(doc["parts"]) == PARTS
    for name, part in doc["parts"].items():
        if name in gpu_check.OPT_IN:
            assert part == {"status": "skipped", "reason": f"runs only when named: --parts {name}"}
            continue
        assert part["status"] == ("skipped" if name in CUDA_ONLY else "ok"), (name, part)
        assert part["seconds"] > 0 and part["timeout_s"] > 0
        assert f"| {name} | {part['status']} |" in md
    assert "needs a CUDA device" in doc["parts"]["cuda_checks"]["reason"]
    # stderr: a first line, one line per part with its status and seconds, then the Markdown file
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(DEFAULT) + 2, proc.stderr
    for name, line in zip(DEFAULT, lines[1:-1], strict=True):
        assert line.startswith(f"gpu_check: {name} {doc['parts'][name]['status']} ") and line.split()[3] != "0.0"
    assert lines[-1] == f"gpu_check: {out / 'gpu-check.md'}"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # written by rename


def test_the_dry_run_records_real_figures(dry_run):
    _, out = dry_run
    doc, md = read(out)
    parts = doc["parts"]
    for name, engine in (("bench_active", "active"), ("bench_reference", "reference")):
        report = parts[name]["output"]
        assert report["engine"] == engine and report["device"] == "cpu" and len(report["rows"]) == 2
        for row in report["rows"]:
            assert row["engine"]["status"] == row["reference"]["status"] == "ok"
            assert row["engine"]["median_s"] > 0 and row["time_ratio"] > 0 and row["engine"]["ms_per_step"] > 0
    scaling = parts["bench_scaling"]["output"]
    assert sorted({tuple(r["grid"]) for r in scaling["rows"]}) == [(16, 16), (32, 32)]
    latent = parts["bench_latent"]["output"]["rows"]  # Table 2's rows, shrunk: latent 16² and 32², pixel 16²
    assert [r["case"] for r in latent[::2]] == ["latent 16²", "latent 32²", "pixel 16²", "pixel 16² checkpointed"]
    assert latent[0]["latent"]["picture"] == [16, 16] and latent[0]["grid"] == [2, 2]
    checkpointed = parts["bench_scaling_checkpoint"]["output"]
    assert checkpointed["checkpoint"] == gpu_check.DRY_CHECKPOINT
    assert all(r["reference"] is None and r["engine"]["peak_mb"] is not None for r in checkpointed["rows"])
    for name in ("train_cuda", "train_cpu"):
        figures = parts[name]["figures"]
        assert figures["iterations"] == gpu_check.DRY_PLAN.train_iters == len(figures["per_iteration_s"])
        assert figures["seconds_per_iteration_median"] > 0 and figures["ms_per_rollout_step_median"] > 0
        assert figures["engine"] == parts[name]["output"]["engine"] == "active"
        assert (Path(figures["run_dir"]) / "model.safetensors").is_file()
    ratio = doc["derived"]["train"]
    assert ratio["cpu_over_cuda"] > 0 and ratio["iterations_compared"] == [2, gpu_check.DRY_PLAN.train_iters]
    torchrun = parts["torchrun"]["figures"]
    assert torchrun["backend"] == "gloo" and torchrun["iterations"] == gpu_check.DRY_PLAN.torchrun_iters
    assert torchrun["same_loss_as_plain"] is True  # one process under torchrun is the plain run, bit for bit
    assert parts["grow"]["output"]["steps"] == gpu_check.DRY_PLAN.grow_steps and (out / "work" / "grow.png").is_file()
    assert parts["grow"]["figures"]["fallback_note"] is None
    # the Triton kernel needs CUDA: on the CPU the verb says so in one line and steps on the active engine
    assert "steps run on the active engine" in parts["grow_fused"]["figures"]["fallback_note"]
    assert (out / "work" / "grow-fused.png").is_file()
    metrics = parts["evaluate"]["output"]["metrics"]
    assert set(metrics) >= {"mse", "psnr", "ssim"} and metrics["mse"]["stage3"]["mean"] >= 0
    videos = out / "work"
    assert (videos / "render.mp4").read_bytes()[4:8] == b"ftyp" and (videos / "render.gif").read_bytes()[:4] == b"GIF8"
    assert parts["render_gif"]["output"]["frames"] == gpu_check.DRY_PLAN.render_steps + 1
    env = doc["environment"]
    assert env["torch"] and env["python"] and env["modules"]["imageio_ffmpeg"]["importable"] is True
    for heading in ("## Engines", "## Scaling", "## Training", "## Verbs", "## Optional modules"):
        assert heading in md
    assert "the CPU takes" in md and "| custom 16×16 | train: 2 × 8 |" in md


def test_without_cuda_it_exits_1_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu"
    proc = run_check("--out", str(out), env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no CUDA device here"), proc.stderr
    assert proc.stdout == "" and not out.exists()


def test_a_failing_part_does_not_stop_the_rest(dry_run, tmp_path):
    """A rerun of three parts into the dry run's folder: grow given half a second (timed out), the MP4 render
    without imageio-ffmpeg (a module that fails to import, as where it is not installed), then the GIF."""
    _, first = dry_run
    out = tmp_path / "check"
    shutil.copytree(first, out)
    shadow = tmp_path / "shadow" / "imageio_ffmpeg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('imageio_ffmpeg is not installed here')\n")
    pythonpath = os.pathsep.join(p for p in (str(shadow.parent), os.environ.get("PYTHONPATH", "")) if p)
    args = ("--dry-run", "--out", str(out), "--parts", "grow,render_mp4,render_gif", "--timeout", "grow=0.5")
    proc = run_check(*args, env={"PYTHONPATH": pythonpath})
    assert proc.returncode == 3, proc.stderr
    doc, md = read(out)
    parts = doc["parts"]
    assert parts["grow"]["status"] == "timed out" and parts["grow"]["reason"] == "timed out after 0.5 s"
    mp4 = parts["render_mp4"]
    assert mp4["status"] == "failed" and mp4["returncode"] == 1
    assert mp4["reason"].startswith("imageio-ffmpeg is not importable here") and "nca: error:" in mp4["reason"]
    assert "imageio_ffmpeg is not installed here" in mp4["stderr_tail"]
    assert not (out / "work" / "render.mp4").exists()
    assert parts["render_gif"]["status"] == "ok" and parts["render_gif"]["output"]["frames"] > 1
    assert doc["environment"]["modules"]["imageio_ffmpeg"]["importable"] is False
    for name in set(PARTS) - {"grow", "render_mp4", "render_gif"}:  # kept from the first run
        assert parts[name].get("kept_from_earlier_run") is True and parts[name]["status"] in ("ok", "skipped")
    assert "| render_mp4 | failed |" in md and "| grow | timed out |" in md and "| render_gif | ok |" in md
    assert [line.split()[1:3] for line in proc.stderr.splitlines()[1:-1]] == [
        ["grow", "timed"],
        ["render_mp4", "failed"],
        ["render_gif", "ok"],
    ]


def test_table1_trains_the_review_rows_and_lays_them_beside_it(tmp_path):
    """The opt-in part, shrunk: the Conv 3x3 preset trained for 2 iterations, then measured beside Table 1 (by MSE
    here: no AlexNet weights are named for it)."""
    out = tmp_path / "check"
    proc = run_check("--dry-run", "--parts", "table1", "--out", str(out), env={"NCA_ALEXNET_WEIGHTS": ""})
    assert proc.returncode == 0, proc.stderr
    doc, md = read(out)
    part = doc["parts"]["table1"]
    assert part["status"] == "ok" and part["figures"]["metric"] == "mse"
    assert part["figures"]["trained"]["table1-conv3"]["iterations"] == gpu_check.DRY_PLAN.table1_iters
    assert part["figures"]["rows"][0]["parameters"] == 22976
    assert "## Table 1 at the review's sizes" in md and "| *review* Conv 3x3 | 0.065 / 0.060 / 0.128 |" in md


def test_textures_trains_figure_11s_rows_and_measures_them(tmp_path):
    """The opt-in part, shrunk: the texture preset with the conv perception trained for 2 iterations on a 16×16
    grid, then measured by the style distance (a random VGG16: a test of the pipeline) beside Figure 11."""
    out = tmp_path / "check"
    proc = run_check("--dry-run", "--parts", "textures", "--out", str(out), env={"NCA_ALLOW_RANDOM_WEIGHTS": "1"})
    assert proc.returncode == 0, proc.stderr
    doc, md = read(out)
    part = doc["parts"]["textures"]
    assert part["status"] == "ok", part
    row = part["figures"]["trained"]["conv"]
    assert row["iterations"] == gpu_check.DRY_PLAN.texture_iters and row["review_recovery"] == 96.38
    assert row["vgg_weights"] == "random" and row["style"]["stage2"]["mean"] > 0
    assert "## Figure 11: textures (skimage:grass" in md and "| conv | 2 |" in md


def test_the_parts_find_the_package_when_it_is_only_on_pythonpath(tmp_path):
    """Every site-packages entry but the project's own (its code, its metadata, its editable hook) on
    PYTHONPATH, under ``python -S``: as on a machine where the project is a copied work tree."""
    farm = tmp_path / "site"
    farm.mkdir()
    for folder in (Path(p) for p in sys.path if p.endswith(("site-packages", "dist-packages"))):
        for entry in folder.iterdir() if folder.is_dir() else ():
            if "ncacli" not in entry.name and not (farm / entry.name).exists():
                (farm / entry.name).symlink_to(entry)
    out = tmp_path / "check"
    proc = run_check(
        "--dry-run", "--out", str(out), "--parts", "train_cuda,grow", env={"PYTHONPATH": str(farm)}, python=("-S",)
    )
    assert proc.returncode == 0, proc.stderr
    doc, _ = read(out)
    assert doc["environment"]["ncacli_entry_points"].startswith("written from pyproject.toml")
    assert doc["environment"]["ncacli_found_at"] == str(ROOT / "src" / "ncacli" / "__init__.py")
    assert doc["parts"]["train_cuda"]["status"] == doc["parts"]["grow"]["status"] == "ok"


def test_a_command_that_fails_or_hangs_becomes_a_record():
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('first\\nboom: it broke\\n'); sys.exit(3)"]
    record = gpu_check.outcome(gpu_check.run_command(failing, 30), 30)
    assert record["status"] == "failed" and record["reason"] == "exit 3: boom: it broke"
    assert record["stderr_tail"] == "first\nboom: it broke"
    hanging = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]
    proc = gpu_check.run_command(hanging, 0.5)
    assert proc.timed_out and proc.stdout.strip() == "started" and proc.seconds < 10
    assert gpu_check.outcome(proc, 0.5, needs_json=False)["status"] == "timed out"


def test_an_exception_in_a_part_becomes_a_failed_record():
    def broken(check, timeout):
        raise RuntimeError("no such figure")

    record = gpu_check.run_part(None, "grow", broken, 1.0)
    assert record["status"] == "failed" and record["reason"] == "gpu_check: RuntimeError: no such figure"
    assert "RuntimeError: no such figure" in record["stderr_tail"] and record["seconds"] >= 0


def test_seconds_per_iteration_from_the_cumulative_seconds():
    metrics = [{"seconds": s, "steps": 10, "loss": 0.1} for s in (1.0, 1.1, 1.3, 1.4, 1.5)]
    figures = gpu_check.training_figures(metrics, warmup=1)
    assert figures["per_iteration_s"] == [1.0, 0.1, 0.2, 0.1, 0.1]
    assert figures["seconds_per_iteration_median"] == pytest.approx(0.1)
    assert figures["ms_per_rollout_step_median"] == pytest.approx(10.0)
    assert figures["first_iteration_s"] == 1.0 and figures["training_seconds"] == 1.5


def test_the_summary_shows_what_cuda_checks_prints(dry_run):
    """The Markdown of a cuda_checks.py JSON line (its keys as that script writes them), on the dry run's record."""
    _, out = dry_run
    doc, _ = read(out)
    check = {"step_max_abs_diff": 1e-7, "max_abs_diff": 2e-6, "graph_vs_eager_max_abs_diff": 0.0}
    check.update({"max_abs_state": 1.5, "relative_diff": 2e-6, "cells_off_by_1e-3": 0, "alive_fraction": 0.2})
    runs = {
        n: {"seconds": s, "cell_steps_per_s": 1.0 / s, "speedup_vs_reference": 0.01 / s}
        for n, s in (("reference", 0.01), ("active", 0.02), ("fused", 0.002), ("fused+graph", 0.001))
    }
    line = {
        "device": "a GPU",
        "batch": 64,
        "grid": 64,
        "steps": 32,
        "block": 128,
        "check": {**check, "calls_equal": True},
    }
    doc["parts"]["cuda_checks"] = {"status": "ok", "output": {**line, "runs": runs, "ratios": {}}}
    md = gpu_check.markdown(doc)
    assert "| max \\|diff\\| after 32 steps | 2e-06 |" in md and "| fused+graph | 1.00 | 1e+03 | 10.00 |" in md


def test_table6_is_skipped_in_a_dry_run_and_laid_out_beside_the_review(tmp_path):
    out = tmp_path / "check"
    proc = run_check("--dry-run", "--parts", "table6", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    doc, _ = read(out)
    assert doc["parts"]["table6"]["status"] == "skipped" and "fixed" in doc["parts"]["table6"]["reason"]
    row = {"model": "NCA Conv 3×3", "ours": {"parameters": 19376, "train_ms": 40.0, "inference_ms": 8.0,
           "train_mb": 3000.0, "inference_mb": 300.0}, "over_unet": {"train_ms": 8.0},
           "review_over_unet": {"train_ms": 8.2}}  # fmt: skip
    md = gpu_check._md_table6({"parts": {"table6": {"status": "ok", "output": {"review_table6": [row]}}}})
    assert md[0].startswith("## Table 6") and any("| NCA Conv 3×3 | 19376 | 40.0 | 8.00 | 8.20 |" in ln for ln in md)
