"""The fused Triton step (:mod:`ncacli.engine.fused`): equal to the reference step, and the models it refuses.

Without a GPU the kernels run through Triton's interpreter. ``TRITON_INTERPRET=1`` must be set before triton is
imported, so those comparisons run in a subprocess (this file run as a script, printing one JSON line) and the
pytest process itself never imports triton in interpreter mode. The grids are tiny (2 × 7 × 9: edges, corners and
odd sizes) so the whole matrix runs in seconds.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
from typing import Any

import pytest
import torch

from ncacli.engine import NCA, CounterRandom, ModelConfig
from ncacli.engine.fused import fused_rollout, fused_step, fused_supported, triton_available

PERCEPTIONS = ("sobel", "sobel_laplacian", "sobel_diagonal")
PADDINGS = ("zeros", "circular")
FIRE_RATES = (0.5, 1.0)
# fused vs reference: max |difference| / max(1, max |reference|)
TOLERANCE = 1e-5


def combo_name(perception: str, padding: str, fire_rate: float, tanh: bool, alive: bool) -> str:
    return f"{perception}-{padding}-fire{fire_rate}-{'tanh' if tanh else 'linear'}-{'alive' if alive else 'all'}"


COMBOS = {
    combo_name(*combo): combo
    for combo in itertools.product(PERCEPTIONS, PADDINGS, FIRE_RATES, (False, True), (True, False))
}
# beside the matrix (one 128-cell program per launch): tiles of 64 and 16 cells that cross rows and samples
EXTRAS = ("nchw-input", "odd-sizes", "block16", "no-generator", "graph-flag-on-cpu", "key-in-memory")


def random_model(seed: int = 0, **options: Any) -> NCA:
    """A model with every update parameter random (a fresh model's last layer is zero)."""
    torch.manual_seed(seed)
    model = NCA(ModelConfig(**{"channels": 16, "hidden": 32, **options}))
    with torch.no_grad():
        for p in model.update.parameters():
            p.normal_(0.0, 0.15)
    return model


def random_state(b: int, c: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    """Random values, alpha nonzero in about a sixth of the cells: a mix of alive, dying and dead cells."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h, w, generator=g) - 0.5
    x[:, 3] = torch.rand(b, h, w, generator=g) * 0.5 * (torch.rand(b, h, w, generator=g) < 0.17)
    return x.contiguous(memory_format=torch.channels_last)


def error(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a - ref).abs().max() / ref.abs().max().clamp_min(1.0)).item()


def reference_rollout(model: NCA, x: torch.Tensor, steps: int, generator: CounterRandom | None) -> torch.Tensor:
    with torch.no_grad():
        for _ in range(steps):
            x = model.reference_step(x, generator)
    return x


def compare(model: NCA, x: torch.Tensor, seed: int = 7, use_generator: bool = True, **options: Any) -> dict:
    """fused_step and a 3-step fused_rollout against the reference: errors, and whether the generators agree."""
    gens = [CounterRandom(seed) if use_generator else None for _ in range(4)]
    one = fused_step(model, x, gens[0], **{k: v for k, v in options.items() if k == "block"})
    ref_one = reference_rollout(model, x, 1, gens[1])
    three = fused_rollout(model, x, 3, gens[2], **options)
    ref_three = reference_rollout(model, x, 3, gens[3])
    calls = [g.calls if g is not None else None for g in gens]
    return {
        "step": error(one, ref_one),
        "rollout": error(three, ref_three),
        "abs": max((one - ref_one).abs().max().item(), (three - ref_three).abs().max().item()),
        "calls": calls,
        "calls_ok": calls[0] == calls[1] and calls[2] == calls[3],
        "zeroed": (ref_three == 0).all(1).float().mean().item(),  # the fraction of dead cells after 3 steps
        "supported": fused_supported(model),
    }


def skip_overflow_checks() -> None:
    """The interpreter checks every 32-bit integer add and multiply for overflow (its asserts only fire in debug
    mode), which is half of its time here; turn that off where its (private) options allow."""
    from triton.runtime import interpreter

    builder = getattr(interpreter, "interpreter_builder", None)
    options = getattr(builder, "options", None)
    if options is not None and hasattr(options, "sanitize_overflow"):
        builder.options = dataclasses.replace(options, sanitize_overflow=False)


def worker() -> dict[str, Any]:
    """Run in the interpreter subprocess: every combination and the extra cases → name → results."""
    torch.set_num_threads(1)
    skip_overflow_checks()
    results: dict[str, Any] = {}
    x = random_state(2, 16, 7, 9)
    for name, (perception, padding, fire_rate, tanh, alive) in COMBOS.items():
        model = random_model(
            perception=perception, padding_mode=padding, fire_rate=fire_rate, update_tanh=tanh, alive_masking=alive
        )
        results[name] = compare(model, x, block=128)  # one program per launch: the interpreter's cost is per program
    base = random_model()
    results["nchw-input"] = compare(base, x.contiguous())
    odd = random_model(channels=6, hidden=20, perception="sobel_diagonal", padding_mode="circular", update_tanh=True)
    results["odd-sizes"] = compare(odd, random_state(3, 6, 5, 3, seed=2))
    results["block16"] = compare(base, x, block=16)
    results["no-generator"] = compare(random_model(fire_rate=1.0), x, use_generator=False)
    results["graph-flag-on-cpu"] = compare(base, x, cuda_graph=True)
    results["key-in-memory"] = key_in_memory(base, x)
    return results


def key_in_memory(model: NCA, x: torch.Tensor) -> dict[str, Any]:
    """The kernel variant a CUDA graph launches (the key read from a device buffer), on the second call's key."""
    from ncacli.engine import fused

    keys = fused._keys(CounterRandom(7), 2, True)
    out, flags = fused._buffers(x, True)
    fused._launch(fused._prepared(model, x.device), x, out, flags, 0, 64, "ieee", torch.tensor(keys), 1)
    ref = reference_rollout(model, x, 1, CounterRandom(7, calls=1))
    return {
        "step": error(out, ref),
        "rollout": 0.0,
        "abs": (out - ref).abs().max().item(),
        "calls_ok": True,
        "supported": None,
    }


@pytest.fixture(scope="module")
def interpreted() -> dict[str, Any]:
    """The worker's results, from a subprocess with ``TRITON_INTERPRET=1``."""
    if not triton_available():
        pytest.skip("triton is not installed")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, __file__], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", [*COMBOS, *EXTRAS])
def test_fused_matches_the_reference_step(interpreted, name):
    result = interpreted[name]
    assert result["supported"] is None
    assert result["step"] < TOLERANCE, result
    assert result["rollout"] < TOLERANCE, result
    assert result["calls_ok"], result


def test_the_generator_moves_only_when_a_fire_mask_is_drawn(interpreted):
    assert interpreted[combo_name("sobel", "zeros", 0.5, False, True)]["calls"] == [1, 1, 3, 3]
    assert interpreted[combo_name("sobel", "zeros", 1.0, False, True)]["calls"] == [0, 0, 0, 0]


def test_the_alive_mask_is_exercised(interpreted):
    """Some cells die and some live, so both alive masks matter in the comparison."""
    zeroed = interpreted[combo_name("sobel", "zeros", 0.5, False, True)]["zeroed"]
    assert 0.1 < zeroed < 0.9
    assert interpreted[combo_name("sobel", "zeros", 0.5, False, False)]["zeroed"] == 0.0


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"perception": "attention"}, "perception 'attention' is not a fixed 3×3 kernel"),
        ({"perception": "conv"}, "perception 'conv' is not a fixed 3×3 kernel"),
        ({"perception": "sobel5"}, "5×5"),
        ({"depth": 2}, "depth 2"),
        ({"update": "residual"}, "not the plain ReLU MLP"),
        ({"condition_channels": 3}, "conditional"),
        ({"signal_channels": 2, "signal_steps": 1}, "signal diffusion"),
    ],
)
def test_unsupported_models_say_why(options, needle):
    reason = fused_supported(NCA(ModelConfig(hidden=16, **options)))
    assert reason is not None and needle in reason


def test_float64_models_and_cpu_models_are_refused():
    assert "float64" in fused_supported(NCA(ModelConfig(hidden=16)).double())
    model = NCA(ModelConfig(hidden=16))
    reason = fused_supported(model)
    if not triton_available():
        assert reason == "triton is not installed"
    elif os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        assert "cpu" in reason and "CUDA" in reason
    if reason is not None:
        with pytest.raises(ValueError, match="cannot run this model"):
            fused_step(model, torch.zeros(1, 16, 4, 4), CounterRandom(0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fused_matches_the_reference_on_cuda():
    if not triton_available():
        pytest.skip("triton is not installed")
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # the reference in float32
    try:
        for perception, padding in [("sobel", "zeros"), ("sobel_diagonal", "circular")]:
            model = random_model(hidden=128, perception=perception, padding_mode=padding).cuda()
            x = random_state(4, 16, 33, 40).cuda()
            assert fused_supported(model) is None
            one = fused_step(model, x, CounterRandom(3))
            assert error(one, reference_rollout(model, x, 1, CounterRandom(3))) < TOLERANCE
            g = CounterRandom(3)
            many = fused_rollout(model, x, 12, g, cuda_graph=True)  # 1 eager step, a graph of 10, 1 eager
            assert g.calls == 12
            assert error(many, reference_rollout(model, x, 12, CounterRandom(3))) < 1e-4
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


if __name__ == "__main__":
    print(json.dumps(worker()))
