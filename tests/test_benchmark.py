"""`nca benchmark`: the plain reference computes what the engine computes, and the verb reports what it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from conftest import ROOT, run_cli
from ncacli.bench import SUITES, NoReference, Settings, custom_case, reference_for, run_benchmark, trained_like
from ncacli.bench.measure import is_oom, measure
from ncacli.bench.system import LoadSampler, MemoryProbe, ResidentMemory, memory_probe
from ncacli.engine import NCA, PERCEPTIONS, ModelConfig, make_seed, register_perception
from ncacli.engine.perception import IDENTITY, FixedKernelPerception

FAST = ("--repeats", "1", "--device", "cpu", "--threads", "1")


class Moore(FixedKernelPerception):
    """A fixed-kernel perception from outside the built-ins: the reference must read its kernels."""

    kernels = [IDENTITY, [[1 / 8, 1 / 8, 1 / 8], [1 / 8, 0.0, 1 / 8], [1 / 8, 1 / 8, 1 / 8]]]


class Learned(nn.Module):
    """A learned perception: no reference for it."""

    features_per_channel = 2

    def __init__(self, channels: int, padding: str = "zeros") -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * channels, 3, padding=1, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread, so a busy test machine does not stall the thread pool."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def extra_perceptions():
    register_perception("test-moore", Moore)
    register_perception("test-learned", Learned)
    yield
    PERCEPTIONS.pop("test-moore", None)
    PERCEPTIONS.pop("test-learned", None)


def randomized(config: ModelConfig, seed: int = 0) -> NCA:
    """A model whose update has sizeable random weights, so a dozen steps change the state a lot."""
    model = trained_like(config, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.update.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


CONFIGS = {
    "sobel-zeros": ModelConfig(),
    "sobel_laplacian-circular": ModelConfig(perception="sobel_laplacian", padding_mode="circular"),
    "sobel-circular-depth2-hidden24": ModelConfig(padding_mode="circular", depth=2, hidden=24),
    "sobel_laplacian-zeros-depth2-12ch": ModelConfig(
        perception="sobel_laplacian", depth=2, hidden=40, channels=12, fire_rate=0.7
    ),
    "no-masking-no-fire-mask": ModelConfig(alive_masking=False, fire_rate=1.0, hidden=32),
    "plugin-kernels-circular": ModelConfig(perception="test-moore", padding_mode="circular", hidden=20),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_reference_rollout_matches_engine(name, extra_perceptions):
    config = CONFIGS[name]
    model = randomized(config)
    ref = reference_for(model)
    seed = make_seed(2, config.channels, 16, 16, positions=((0.5, 0.5), (0.2, 0.8)))
    with torch.no_grad():
        a = model.rollout(seed, 12, torch.Generator().manual_seed(5))
        b = ref.rollout(seed, 12, torch.Generator().manual_seed(5))
        other = ref.rollout(seed, 12, torch.Generator().manual_seed(6))
    assert (a - seed).abs().max() > 0.05  # the rollout did something worth comparing
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    if config.fire_rate < 1.0:  # the fire mask comes from the generator, in the same order
        assert (other - b).abs().max() > 1e-3


def test_reference_gradients_match_engine():
    config = ModelConfig(perception="sobel_laplacian", padding_mode="circular", depth=2, hidden=24)
    model = randomized(config)
    ref = reference_for(model)
    seed = make_seed(2, config.channels, 12, 12)
    target = torch.rand(4, 12, 12, generator=torch.Generator().manual_seed(0))
    for module in (model, ref):
        out = module.rollout(seed, 8, torch.Generator().manual_seed(3))
        ((out[:, :4] - target) ** 2).mean().backward()
    convs = [m for m in model.update.net if isinstance(m, nn.Conv2d)]
    assert len(convs) == len(ref.weights) == 3
    for conv, w, b in zip(convs, ref.weights, ref.biases, strict=True):
        assert conv.weight.grad.abs().max() > 0
        torch.testing.assert_close(w.grad, conv.weight.grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(b.grad, conv.bias.grad, atol=1e-5, rtol=1e-4)


def test_no_reference_for_a_learned_perception(extra_perceptions):
    model = NCA(ModelConfig(perception="test-learned", hidden=16))
    with pytest.raises(NoReference, match="no reference for perception 'test-learned'"):
        reference_for(model)
    settings = Settings(torch.device("cpu"), repeats=1, warmup=1, max_seconds=None, max_memory=None)
    report = run_benchmark(model, [custom_case(8, 1, 2)], settings)
    assert report["reference"] == {"available": False, "note": "no reference for perception 'test-learned'"}
    assert [r["phase"] for r in report["rows"]] == ["train", "inference"]
    for row in report["rows"]:
        assert row["engine"]["status"] == "ok" and row["engine"]["median_s"] > 0
        assert row["reference"] is None and row["time_ratio"] is None


def test_benchmark_json_reports_every_figure(capsys):
    torch.set_num_threads(2)
    code, out, err = run_cli(capsys, "benchmark", "--size", "16", "--batch", "2", "--steps", "4", "--json", *FAST)
    assert code == 0, err
    assert torch.get_num_threads() == 2  # --threads 1 is put back for an in-process caller
    doc = json.loads(out)
    assert doc["suite"] == "custom" and doc["device"] == "cpu" and doc["device_name"]
    assert doc["torch"] == torch.__version__ and doc["threads"] == 1 and doc["cpu_count"] == os.cpu_count()
    assert doc["spread"].startswith("min-max") and doc["reference"]["available"] is True
    if sys.platform == "linux":
        assert doc["other_process_load"]["cores"] >= 0 and doc["other_process_load"]["wall_s"] > 0
    assert [r["phase"] for r in doc["rows"]] == ["train", "inference"]
    for row in doc["rows"]:
        assert row["model"] == ModelConfig().to_dict() and row["parameters"] == 8336
        assert (row["batch"], row["grid"], row["steps"], row["repeats"], row["warmup"]) == (2, [16, 16], 4, 1, 1)
        assert row["cell_steps"] == 2 * 16 * 16 * 4
        for side in ("engine", "reference"):
            m = row[side]
            assert m["status"] == "ok" and m["oom"] is False and len(m["times_s"]) == 1
            assert 0 < m["min_s"] <= m["median_s"] <= m["max_s"]
            assert m["cell_steps_per_s"] == pytest.approx(row["cell_steps"] / m["median_s"])
            assert m["ms_per_step"] == pytest.approx(m["median_s"] * 1000 / 4)
            assert m["peak_mb"] > 0
        assert row["time_ratio"] == pytest.approx(row["engine"]["median_s"] / row["reference"]["median_s"])
        assert row["memory_ratio"] == pytest.approx(row["engine"]["peak_mb"] / row["reference"]["peak_mb"])
        assert row["max_abs_diff"] is not None and row["max_abs_diff"] < 1e-5


def test_benchmark_of_a_model_file_shows_a_table(capsys, tiny_model):
    from ncacli.io.model_file import describe

    code, out, err = run_cli(capsys, "benchmark", tiny_model, "--size", "12", "--batch", "1", "--steps", "3", *FAST)
    assert code == 0, err
    assert out == ""  # the table goes to stderr
    for text in ("cpu:", "engine", "reference", "train: 1 × 3", "inference: 1 × 3", "custom 12×12", "ms/step"):
        assert text in err, text
    code, out, err = run_cli(capsys, "benchmark", tiny_model, "--steps", "2", "--size", "10", "--json", *FAST)
    doc = json.loads(out)
    assert doc["model_source"] == str(tiny_model)
    assert doc["rows"][0]["model"] == describe(str(tiny_model))["config"]
    assert doc["rows"][0]["model"]["hidden"] == 32 and doc["rows"][0]["reference"]["status"] == "ok"


def test_scaling_suite_reports_oom_instead_of_crashing(capsys):
    args = ("benchmark", "--suite", "scaling", "--sizes", "8,16,64", "--max-memory", "1", *FAST)
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    rows = {(r["grid"][0], r["phase"]): r for r in json.loads(out)["rows"]}
    assert [r["steps"] for r in rows.values()] == [4, 4, 8, 8, 32, 32]  # steps = W/2, batch 1
    assert all(r["batch"] == 1 for r in rows.values())
    for phase in ("train", "inference"):
        assert rows[8, phase]["engine"]["status"] == "ok" and rows[8, phase]["engine"]["median_s"] > 0
        for side in ("engine", "reference"):
            m = rows[64, phase][side]
            assert m["oom"] is True and m["median_s"] is None and m["estimated_mb"] > 1
            assert m["note"].startswith("OOM (estimated ") and m["note"].endswith("> 1.0 MB available)")
    assert rows[16, "train"]["engine"]["oom"] is True
    code, _, err = run_cli(capsys, "benchmark", "--suite", "scaling", "--sizes", "64", "--max-memory", "1", *FAST)
    assert code == 0 and "OOM (estimated" in err


def test_time_budget_skips_a_measurement(capsys):
    args = ("--suite", "scaling", "--sizes", "16", "--max-seconds", "0.00001", "--json")
    code, out, err = run_cli(capsys, "benchmark", *args, *FAST)
    assert code == 0, err
    for row in json.loads(out)["rows"]:
        for side in ("engine", "reference"):
            assert row[side]["status"] == "skipped" and row[side]["estimated_s"] > 0.00001
            assert row[side]["note"].startswith("skipped (estimated")


def test_busy_machine_gives_one_warning_line(capsys, monkeypatch):
    import ncacli.bench.suites as suites

    class Busy(LoadSampler):
        def result(self):
            return {**super().result(), "cores": 1.5}

    monkeypatch.setattr(suites, "LoadSampler", Busy)
    code, out, err = run_cli(capsys, "benchmark", "--size", "8", "--batch", "1", "--steps", "2", "--json", *FAST)
    assert code == 0
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: other processes kept 1.5 of")
    assert "CPU timings are unreliable" in warnings[0]
    assert json.loads(out)["warnings"] == [warnings[0]]


@pytest.mark.skipif(not ResidentMemory.available(), reason="needs /proc/self/clear_refs")
def test_resident_memory_probe_sees_one_runs_peak():
    probe = memory_probe(torch.device("cpu"))
    probe.start()
    x = torch.ones(50_000_000)  # 200 MB, then freed
    del x
    peak, baseline = probe.stop()
    assert peak >= 190 * 2**20 and baseline > 0
    probe.start()  # the high-water mark starts again from the current resident set
    y = torch.ones(1000)
    del y
    assert probe.stop()[0] < 50 * 2**20


def test_out_of_memory_errors_are_recognised():
    assert is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"))
    assert is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_oom(MemoryError())
    assert not is_oom(RuntimeError("shapes cannot be multiplied"))
    assert not is_oom(ValueError("out of memory"))


def test_an_out_of_memory_run_is_marked_and_the_others_go_on():
    calls = {"late": 0}

    def fine() -> torch.Tensor:
        return torch.ones(3)

    def early() -> torch.Tensor:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99 GB")

    def late() -> torch.Tensor:  # fits in the warm-up, not in the second timed run
        calls["late"] += 1
        if calls["late"] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return torch.ones(3)

    runs = {"engine": fine, "reference": early, "other": late}
    results = measure(runs, torch.device("cpu"), 3, 1, MemoryProbe())
    assert results["engine"].ok and len(results["engine"].times) == 3
    for name in ("reference", "other"):
        assert results[name].status == "oom" and results[name].times == [] and not results[name].ok
    assert calls["late"] == 3


def one_error_line(capsys, expected: int, args: tuple, *needles: str) -> None:
    code, _, err = run_cli(capsys, "benchmark", *args)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == expected and len(lines) == 1 and lines[0].startswith("nca: error: "), (code, err)
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_bad_inputs_give_one_error_line(capsys, tmp_path):
    from ncacli.registry import SUITES as SUITE_NAMES

    assert list(SUITE_NAMES) == list(SUITES)
    one_error_line(capsys, 2, ("--suite", "standrd"), "did you mean 'standard'")
    one_error_line(capsys, 1, (tmp_path / "gone.safetensors",), "gone.safetensors", "not found")
    one_error_line(capsys, 2, ("--suite", "scaling", "--sizes", "64,x"), "--sizes")
    one_error_line(capsys, 2, ("--suite", "distill", "--size", "32"), "leave out --suite")
    code, _, err = run_cli(capsys, "benchmark", "--repeats", "0")
    assert code == 2 and "Traceback" not in err


def test_checkpointed_engine_agrees_with_the_reference_and_uses_less_memory():
    # Each figure from a fresh process, as a user runs `nca benchmark`: a resident-set peak taken inside the
    # long test process also counts the heap that earlier tests left fragmented.
    args = ["--size", "48", "--batch", "2", "--steps", "32", "--engine", "reference", "--json", *FAST]

    def row(*more: str) -> tuple[dict, dict]:
        proc = subprocess.run(
            [sys.executable, "-m", "ncacli", "benchmark", *args, *more], capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        return doc, doc["rows"][0]

    _, plain = row()
    doc, checkpointed = row("--checkpoint", "4")
    assert doc["checkpoint"] == 4 and checkpointed["phase"] == "train"
    assert checkpointed["max_abs_diff"] is not None and checkpointed["max_abs_diff"] < 1e-5  # the reference's loss
    # a 32-step graph against one of 4 steps plus 8 saved states: several times smaller (here 121 against 44 MB)
    assert checkpointed["engine"]["peak_mb"] < 0.6 * plain["engine"]["peak_mb"]


def test_perception_table_is_one_command(tmp_path):
    out = tmp_path / "table"
    args = ["--perceptions", "sobel_diagonal", "--iters", "2", "--size", "8", "--padding", "2", "--batch", "4"]
    args += ["--steps", "6,8", "--trials", "2", "--device", "cpu", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "perception_table.py"), *args], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("| perception |") and lines[2].startswith("| `sobel_diagonal` |")
    rows = json.loads((out / "table.json").read_text())
    assert rows[0]["parameters"] == 16 * 5 * 128 + 128 + 128 * 16 + 16 and rows[0]["receptive_field"] == 3
    assert rows[0]["metric"] in ("lpips", "mse") and rows[0]["seconds_per_iteration"] > 0
    assert (out / "sobel_diagonal" / "model.safetensors").is_file() and not rows[0]["conditional"]


def test_perception_table_of_conditional_models_adds_mutation_recovery(tmp_path):
    out = tmp_path / "table"
    args = ["--perceptions", "conv", "--emoji", "🦎", "--emoji", "🦋", "--iters", "2", "--size", "8"]
    args += ["--padding", "2", "--batch", "6", "--steps", "6,8", "--trials", "2", "--device", "cpu", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "perception_table.py"), *args], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "| mutation recovery % |" in proc.stdout.splitlines()[0]
    rows = json.loads((out / "table.json").read_text())
    assert rows[0]["conditional"] and "mutation_recovery" in rows[0]
    assert "condition_channels = 2" in (out / "conv" / "config.toml").read_text()


def test_start_states_set_how_much_of_the_grid_is_alive(capsys):
    """The active engine's work follows the living cells, so the report says where rollouts start and how
    much of the grid was alive; the engine agrees with the reference from each start."""
    alive = {}
    for start in ("seed", "grown", "full"):
        args = ["benchmark", "--size", "36", "--batch", "2", "--steps", "6", "--start", start, "--json", *FAST]
        code, out, err = run_cli(capsys, *args)
        assert code == 0, err
        doc = json.loads(out)
        assert doc["start"] == start and doc["engine"] == "active"
        rows = {row["phase"]: row for row in doc["rows"]}
        assert rows["inference"]["max_abs_diff"] < 1e-4
        alive[start] = rows["inference"]["alive_fraction"]
    assert alive["seed"] < 0.05 < alive["grown"] < 0.6 < alive["full"] <= 1.0


def test_benchmark_refuses_an_unknown_start_or_engine(capsys):
    from ncacli.bench.states import STARTS
    from ncacli.cli.benchmark import ENGINES
    from ncacli.cli.benchmark import STARTS as NAMES
    from ncacli.engine.nca import ENGINES as ALL

    assert NAMES == STARTS and set(ENGINES) <= {"auto", *ALL}
    one_error_line(capsys, 2, ("--start", "grwn"), "did you mean 'grown'")
    one_error_line(capsys, 2, ("--engine", "fast"), "'fast'")
