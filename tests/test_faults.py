"""Writers that never lie and inputs that are never taken in silence.

A full disk is tested for real on a small tmpfs where the tests can mount one (as root, as CI runs), through
a file-size limit on a child process (``RLIMIT_FSIZE``, anywhere on Linux), and through a writer made to fail
where neither is possible. Every case checks the promise: one line naming the file and the cause, exit 1, no
partial or temporary file left, and the file that was there before unchanged.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, TINY, last_json, one_error_line, run_cli
from ncacli.errors import WriteError
from ncacli.io.files import append_line, atomic_write_bytes

NO_SPACE = "no space left on device"


def _can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.fixture
def small_disk(tmp_path):
    """``fill(free_kb)`` → a 2 MB tmpfs left with about ``free_kb`` KB free; unmounted afterwards."""
    mounted: list[Path] = []

    def fill(free_kb: int) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(where)
        free = shutil.disk_usage(where).free
        (where / "filler").write_bytes(b"\0" * max(0, free - free_kb * 1024))
        return where

    if not _can_mount():
        pytest.skip("mounting a tmpfs needs root")
    yield fill
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _grow_args(model: Path, out: Path) -> list[str]:
    suffix = out.suffix
    if suffix in (".gif", ".mp4", ".html"):
        return ["render", model, out, "--steps", "40", "--scale", "8"]
    return ["grow", model, "--steps", "10", "--out", out, "--scale", "16"]


OUTPUTS = ["g.mp4", "g.gif", "page.html", "grown.png", "state.safetensors"]


@pytest.mark.parametrize("name", OUTPUTS)
def test_a_full_disk_is_one_line_and_leaves_the_old_file(capsys, small_disk, tiny_model, name):
    disk = small_disk(0)  # full: even a one-byte file needs a page
    before = _listing(disk)
    code, out, err = run_cli(capsys, *_grow_args(tiny_model, disk / name))
    assert code == 1 and out == ""
    one_error_line(err, f"{disk / name}: {NO_SPACE}")
    assert _listing(disk) == before  # no partial file, no temporary file

    (disk / "filler").unlink()  # room for the first write, then fill again: the old file must survive
    assert run_cli(capsys, *_grow_args(tiny_model, disk / name))[0] == 0
    kept = (disk / name).read_bytes()
    (disk / "filler").write_bytes(b"\0" * shutil.disk_usage(disk).free)
    code, _, err = run_cli(capsys, *_grow_args(tiny_model, disk / name))
    assert code == 1
    one_error_line(err, f"{disk / name}: {NO_SPACE}")
    assert (disk / name).read_bytes() == kept and _listing(disk) == sorted([*before, name])


def test_the_video_is_whole_when_it_fits(capsys, small_disk, tiny_model):
    """The same render with room to spare: exit 0 and a video whose every frame reads back."""
    import imageio.v2 as imageio

    disk = small_disk(1500)
    for name in ("g.mp4", "g.gif"):
        code, _, _ = run_cli(capsys, "render", tiny_model, disk / name, "--steps", "40", "--scale", "8")
        assert code == 0
        with imageio.get_reader(disk / name) as reader:
            assert sum(1 for _ in reader) == 41


@pytest.mark.parametrize("free_kb", [8, 40, 80, 160])  # full at a checkpoint, at resume.safetensors, later
def test_training_on_a_filling_disk_keeps_every_file_whole(capsys, small_disk, target_png, free_kb):
    """Wherever the disk fills (config, metrics, a checkpoint, the resume file, the model), training stops with
    one line naming that file, and everything in the run directory is whole: each model loads, each metrics
    line parses, no temporary file remains, and a resume file (when there is one) continues the run."""
    from ncacli.io.model_file import load_model

    disk = small_disk(free_kb)
    run = disk / "run"
    args = ["train", "--target", target_png, "--preset", "growing", "--iters", "12", "--out", run, *TINY]
    code, out, err = run_cli(capsys, *args, "--set", "checkpoint_every=3")
    if code == 0:
        assert last_json(out)["iterations"] == 12
    else:
        assert code == 1 and out == ""
        one_error_line(err, f"{run}", NO_SPACE, "training stopped at iteration")
        assert "resume" in err
    files = [p for p in run.rglob("*") if p.is_file()] if run.exists() else []
    assert not [p for p in files if p.name.startswith(".")], files  # no temporary files
    for path in files:
        if path.suffix == ".safetensors" and path.name != "resume.safetensors":
            load_model(str(path))
        if path.suffix == ".png":
            Image.open(path).load()
        if path.name == "metrics.jsonl":
            text = path.read_text()
            assert text == "" or text.endswith("\n")
            assert all(json.loads(line)["iteration"] >= 1 for line in text.splitlines())
    if code == 1 and (run / "resume.safetensors").exists():
        (disk / "filler").unlink()
        code, out, _ = run_cli(capsys, "train", "--resume", run, "--quiet")
        assert code == 0 and last_json(out)["iterations"] == 12


def test_a_failed_append_keeps_whole_lines(small_disk):
    log = small_disk(8) / "metrics.jsonl"
    line = json.dumps({"iteration": 0, "loss": 0.123456789, "pad": "x" * 300})
    written = 0
    with pytest.raises(WriteError, match=f"{log}: {NO_SPACE}"):
        for _ in range(10_000):
            append_line(log, line)
            written += 1
    assert written > 0 and log.read_text() == (line + "\n") * written


def _limited(limit: int):
    """A child process that may write files of ``limit`` bytes at most (EFBIG past it, as a full disk would)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("name", ["g.mp4", "g.gif"])
def test_a_video_writer_that_fails_is_seen(tmp_path, tiny_model, name):
    """ffmpeg (mp4) and Pillow (gif) past a file-size limit: the render says so and leaves no file; before,
    ffmpeg's failure at the trailer was printed and then reported as a rendered video."""
    out = tmp_path / name
    done = subprocess.run(
        [sys.executable, "-m", "ncacli", *map(str, _grow_args(tiny_model, out))],
        capture_output=True,
        preexec_fn=_limited(8 * 1024),
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=120,
        cwd=ROOT,
    )
    err = done.stderr.decode()
    assert done.returncode == 1, err
    one_error_line(err, f"{out}: file too large")
    assert _listing(tmp_path) == []


def test_sigterm_stops_a_verb_with_143_and_keeps_the_old_file(tmp_path, tiny_model):
    """``kill`` (SIGTERM) stops any verb as Ctrl-C does: one line, exit 143, the old output as it was. Before,
    Python's default action killed the process without a word."""
    import time

    out = tmp_path / "grown.png"
    out.write_bytes(b"the old picture")
    command = [sys.executable, "-m", "ncacli", "grow", str(tiny_model), "--steps", "100000000", "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    # Sent once the process catches SIGTERM (its handler is in place from the start of `nca`; on a loaded machine
    # the imports before it can take longer than any fixed wait), then a moment more, into the rollout.
    deadline = time.time() + 60
    while time.time() < deadline and not _catches(proc.pid, signal.SIGTERM):
        time.sleep(0.05)
    time.sleep(2)  # a hundred million steps take hours
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()
    assert err.decode().strip() == "nca: terminated" and stdout == b""
    assert out.read_bytes() == b"the old picture" and _listing(tmp_path) == ["grown.png"]


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (Linux: the ``SigCgt`` mask of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def _fail_to_sync(path) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("name", OUTPUTS)
def test_a_writer_that_raises_keeps_the_old_file(capsys, monkeypatch, tmp_path, tiny_model, name):
    """Where no disk can be filled: the last step of every write (flushing to disk) fails as a full disk does."""
    out = tmp_path / name
    out.write_bytes(b"precious")
    monkeypatch.setattr("ncacli.io.files._fsync", _fail_to_sync)
    code, _, err = run_cli(capsys, *_grow_args(tiny_model, out))
    assert code == 1
    one_error_line(err, f"{out}: {NO_SPACE}")
    assert out.read_bytes() == b"precious" and _listing(tmp_path) == [name]


def test_train_names_the_file_it_could_not_write(capsys, monkeypatch, tmp_path, target_png):
    run = tmp_path / "run"
    real = atomic_write_bytes

    def full_at_checkpoints(path, data):
        if "checkpoints" in str(path):
            raise WriteError(f"{path}: {NO_SPACE}")
        real(path, data)

    monkeypatch.setattr("ncacli.io.model_file.atomic_write_bytes", full_at_checkpoints)
    args = ["train", "--target", target_png, "--preset", "growing", "--iters", "6", "--out", run, *TINY]
    code, _, err = run_cli(capsys, *args, "--set", "checkpoint_every=3")
    assert code == 1
    one_error_line(err, f"{run / 'checkpoints' / 'step-000003.safetensors'}: {NO_SPACE}", "at iteration 3")
    assert not (run / "model.safetensors").exists()


# --- inputs that were taken in silence -------------------------------------------------------------------


def _conditional_model(tmp_path, target_png) -> Path:
    ring = np.zeros((16, 16, 4), np.uint8)
    ring[3:13, 3:13] = (20, 200, 60, 255)
    Image.fromarray(ring).save(tmp_path / "square.png")
    from ncacli.cli import main

    out = tmp_path / "cond"
    args = ["train", "--target", str(target_png), "--target", str(tmp_path / "square.png"), "--iters", "2"]
    assert main([*args, "--out", str(out), *TINY]) == 0
    return out / "model.safetensors"


def test_a_truncated_control_video_is_one_line(capsys, tmp_path, target_png):
    model = _conditional_model(tmp_path, target_png)
    frames = [
        np.full((16, 16, 3), 25 * i, np.uint8) + np.random.default_rng(i).integers(0, 9, (16, 16, 3), np.uint8)
        for i in range(10)
    ]
    whole = tmp_path / "v.gif"
    Image.fromarray(frames[0]).save(whole, save_all=True, append_images=[Image.fromarray(f) for f in frames[1:]])
    cut = tmp_path / "half.gif"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    args = ["render", model, tmp_path / "c.gif", "--steps", "10", "--condition-video"]
    assert run_cli(capsys, *args, whole)[0] == 0
    code, _, err = run_cli(capsys, *args, cut)
    assert code == 1
    one_error_line(err, f"{cut}: the video ends early, after ", " frames")
    assert int(err.split("after ")[1].split()[0]) < 10


def test_random_weights_are_refused_outside_the_tests(capsys, monkeypatch, tmp_path, style_png, tiny_model):
    monkeypatch.delenv("NCA_ALLOW_RANDOM_WEIGHTS")
    run = tmp_path / "style"
    code, _, err = run_cli(capsys, "train", "--style", style_png, "--vgg-weights", "random", "--out", run, *TINY)
    assert code == 2
    one_error_line(err, "--vgg-weights random", "test suite only", "NCA_ALLOW_RANDOM_WEIGHTS=1")
    assert not run.exists()  # refused before anything was written
    code, _, err = run_cli(capsys, "evaluate", tiny_model, "--metric", "lpips", "--lpips-weights", "random")
    assert code == 2
    one_error_line(err, "--lpips-weights random", "test suite only")


def test_random_weights_are_announced_and_recorded(capsys, tmp_path, style_png):
    run = tmp_path / "style"
    args = ["train", "--style", style_png, "--vgg-weights", "random", "--iters", "2", "--out", run, *TINY]
    code, out, err = run_cli(capsys, *args, "--set", "objectives.style.size=24")
    assert code == 0 and "VGG16: random weights" in err
    assert last_json(out)["random_weights"] == ["VGG16"]
    code, out, _ = run_cli(capsys, "info", run / "model.safetensors", "--json")
    assert code == 0 and json.loads(out)["random_weights"] == ["VGG16"]
    code, _, err = run_cli(capsys, "info", run / "model.safetensors")
    assert "random weights" in err and "VGG16" in err
