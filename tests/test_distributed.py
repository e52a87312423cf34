"""Training under torchrun (gloo on the CPU): one model over several processes, rank 0 writing, exact resume,
and one process under torchrun giving the plain run's weights bit for bit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import ROOT, one_error_line, run_cli
from ncacli.config import resolve
from ncacli.errors import NcaError, UsageError
from ncacli.io.model_file import load_model
from ncacli.train.distributed import World, check_resume, generator_seed, shard_of

# The smallest persistent run: 12×12 grid, 4–6 steps, a pool of 8, 3 iterations (model and pool stay tiny).
TINY = [
    "--preset",
    "persistent",
    "--size",
    "8",
    "--padding",
    "2",
    "--batch",
    "4",
    "--set",
    "steps_min=4",
    "--set",
    "steps_max=6",
    "--set",
    "pool_size=8",
    "--set",
    "hidden=16",
    "--seed",
    "3",
    "--quiet",
    "--device",
    "cpu",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun's default for its workers; the plain runs use it too
TIMEOUT = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(n: int, *args: object) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node n -m ncacli ARGS`` → the finished process (text output)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n)]
    command += ["--master_port", str(free_port()), "-m", "ncacli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=TIMEOUT)


def plain(*args: object) -> subprocess.CompletedProcess:
    """``python -m ncacli ARGS`` with the thread count torchrun gives its workers."""
    command = [sys.executable, "-m", "ncacli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=TIMEOUT)


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("nca: error:")]


def losses_of(run: Path) -> list[dict]:
    """The metrics of a run without their timings."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def assert_same_tensors(a: Path, b: Path, skip: tuple[str, ...] = ()) -> None:
    """Bit for bit: both runs do the same arithmetic on one machine, with one thread each (OMP_NUM_THREADS=1),
    the same batches and shards; an all-reduce over one process, or a sum of two, is exact in any order."""
    ta, tb = load_file(a), load_file(b)
    assert set(ta) == set(tb)
    for key in ta:
        if not key.startswith(skip):
            assert torch.equal(ta[key], tb[key]), key


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, target_png) -> tuple[subprocess.CompletedProcess, Path]:
    """A 3-iteration run on 2 processes: ``(the finished torchrun, its run directory)``."""
    out = tmp_path_factory.mktemp("two") / "run"
    return torchrun(2, "train", "--target", target_png, "--iters", 3, "--out", out, *TINY), out


def test_two_processes_train_one_model_and_rank_0_writes(two_ranks):
    proc, out = two_ranks
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in out.parent.iterdir()] == ["run"]  # one run directory, none from rank 1
    for name in ("config.toml", "metrics.jsonl", "model.safetensors", "preview.png", "resume.safetensors"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2, 3]
    (result,) = json_lines(proc.stdout)  # the final JSON once, from rank 0
    assert result["model"] == str(out / "model.safetensors") and result["iterations"] == 3
    assert result["loss"] == records[-1]["loss"]
    model, provenance = load_model(str(out / "model.safetensors"))
    assert provenance["iterations"] == 3 and model.config.hidden == 16
    resume = load_file(out / "resume.safetensors")
    assert resume["pool"].shape == (8, 16, 12, 12)  # the whole pool: both ranks' 4 samples
    assert {"rng", "rng.1"} <= set(resume)
    assert not torch.equal(resume["rng"], resume["rng.1"])
    with safe_open(out / "resume.safetensors", "pt") as f:
        assert f.metadata()["world_size"] == "2"


def test_resume_on_as_many_processes_continues_exactly(tmp_path, two_ranks, target_png):
    _, full = two_ranks
    part = tmp_path / "part"
    first = torchrun(2, "train", "--target", target_png, "--iters", 2, "--out", part, *TINY)
    assert first.returncode == 0, first.stderr
    resumed = torchrun(2, "train", "--resume", part, "--iters", 3, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert json_lines(resumed.stdout)[-1]["iterations"] == 3
    assert_same_tensors(full / "model.safetensors", part / "model.safetensors")
    assert_same_tensors(full / "resume.safetensors", part / "resume.safetensors")
    assert losses_of(full) == losses_of(part)


def test_resume_on_another_number_of_processes_is_one_error_line(capsys, tmp_path, two_ranks, target_png):
    _, two = two_ranks
    code, _, err = run_cli(capsys, "train", "--resume", two, "--iters", 4)  # plain: 1 process
    assert code == 1
    one_error_line(err, "trained by 2 processes, not 1", "torchrun --nproc_per_node 2")

    one = tmp_path / "one"
    assert plain("train", "--target", target_png, "--iters", 1, "--out", one, *TINY).returncode == 0
    proc = torchrun(2, "train", "--resume", one, "--iters", 2, "--quiet")
    assert proc.returncode != 0
    (line,) = error_lines(proc.stderr)  # rank 0's; rank 1 stays quiet
    assert "trained by 1 process, not 2" in line and "nca train --resume" in line
    assert len((one / "metrics.jsonl").read_text().splitlines()) == 1


def test_one_process_under_torchrun_is_the_plain_run(tmp_path, target_png):
    args = ["train", "--target", target_png, "--iters", 3, *TINY, "--set", "mode='regenerating'"]
    args += ["--set", "damage_count=1"]
    ranked, alone = tmp_path / "torchrun", tmp_path / "plain"
    proc = torchrun(1, *args, "--out", ranked)
    assert proc.returncode == 0, proc.stderr
    proc = plain(*args, "--out", alone)
    assert proc.returncode == 0, proc.stderr
    assert_same_tensors(ranked / "model.safetensors", alone / "model.safetensors")
    assert_same_tensors(ranked / "resume.safetensors", alone / "resume.safetensors")
    assert losses_of(ranked) == losses_of(alone)


def test_ctrl_c_stops_every_rank_with_130_and_rank_0_saves(tmp_path, target_png):
    """The workers as torchrun starts them (its variables set), each sent SIGINT as torchrun forwards it."""
    out = tmp_path / "run"
    port = str(free_port())
    args = ["train", "--target", str(target_png), "--iters", "100000", "--out", str(out), *TINY]
    procs = []
    for rank in (0, 1):
        env = {**ENV, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        command = [sys.executable, "-m", "ncacli", *args]
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT))
    metrics = out / "metrics.jsonl"
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 2):
        time.sleep(0.1)
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    outputs = [proc.communicate(timeout=TIMEOUT) for proc in procs]
    assert [proc.returncode for proc in procs] == [130, 130], [err.decode() for _, err in outputs]
    errs = [err.decode() for _, err in outputs]
    assert "interrupted at iteration" in errs[0] and "torchrun --nproc_per_node 2" in errs[0]
    assert errs[1] == "" and "Traceback" not in errs[0]
    done = len(metrics.read_text().splitlines())
    assert (out / f"checkpoints/step-{done:06d}.safetensors").is_file()
    resume = load_file(out / "resume.safetensors")
    assert resume["pool"].shape[0] == 8 and "rng.1" in resume
    assert [o for o, _ in outputs] == [b"", b""] and not (out / "model.safetensors").exists()


# ---- in-process: the arithmetic of the shards, seeds and checks ----------------------------------------


def test_the_environment_names_the_world():
    assert World.from_env({}) is None
    assert World.from_env({"MASTER_ADDR": "localhost", "WORLD_SIZE": "1"}) is None
    env = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    assert World.from_env(env) == World(1, 2, 1)
    with pytest.raises(NcaError, match="WORLD_SIZE is 4"):
        World.from_env({"WORLD_SIZE": "4", "RANK": "0"})


def test_shards_divide_the_batch_pool_and_damage():
    config = resolve("regenerating", None, ["batch=8", "pool_size=16", "damage_count=3", "device='cpu'"])
    assert shard_of(config, None) == (whole := shard_of(config, World(0, 1, 0)))
    assert (whole.batch, whole.pool_size, whole.pool_start, whole.damage_count) == (8, 16, 0, 3)
    shards = [shard_of(config, World(rank, 2, rank)) for rank in (0, 1)]
    assert [(s.batch, s.pool_size, s.pool_start, s.damage_count) for s in shards] == [(4, 8, 0, 2), (4, 8, 8, 1)]
    with pytest.raises(UsageError, match="batch 8 does not divide between the 3 processes"):
        shard_of(config, World(0, 3, 0))
    with pytest.raises(UsageError, match="pool_size 16 does not divide"):
        shard_of(resolve("regenerating", None, ["batch=12", "pool_size=16"]), World(0, 12, 0))
    with pytest.raises(UsageError, match="too few"):
        shard_of(config, World(0, 8, 0))  # 1 sample a rank: no room for a seed and a damaged one


def test_rank_0_draws_the_plain_run_s_seed_and_resume_checks_the_count():
    assert generator_seed(7, None) == generator_seed(7, World(0, 4, 0)) == 7
    assert len({generator_seed(7, World(r, 4, r)) for r in range(4)}) == 4
    check_resume({}, None, "d")
    check_resume({"world_size": "2"}, World(1, 2, 1), "d")
    with pytest.raises(NcaError, match="trained by 2 processes, not 3"):
        check_resume({"world_size": "2"}, World(0, 3, 0), "d")
