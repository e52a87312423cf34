"""`nca benchmark --suite ncatorch-table6`: the review's Table 6 rows (a U-Net, the GAN, two NCAs) at the review's
sizes, timed through the same runner as an NCA, laid beside the review's figures as ratios over the U-Net."""

from __future__ import annotations

import copy

import pytest
import torch

from ncacli.bench import Settings, custom_case, run_benchmark
from ncacli.bench.measure import train_run
from ncacli.bench.table6 import REVIEW, beside_review, subjects


@pytest.fixture(scope="module")
def rows():
    return dict(subjects(torch.device("cpu"), 0))


def count(model) -> int:
    from ncacli.bench.table6 import parameters_at_inference

    return parameters_at_inference(model)


def test_the_rows_have_the_review_s_sizes(rows):
    assert list(rows) == list(REVIEW)
    assert count(rows["NCA Conv 3×3"]) == 19_376  # the review's module, exactly
    assert count(rows["U-Net"]) == count(rows["GAN"]) == 2_703_136  # its 2,768,772: within 3%
    assert abs(count(rows["NCA Attention"]) - 18_132) / 18_132 < 0.05
    gan = rows["GAN"]
    assert sum(p.numel() for p in gan.parameters()) == count(gan)  # the critic is built at its first step


def test_every_row_runs_through_the_benchmark_runner(rows):
    """A tiny configuration of each row: both phases measured, no reference for the U-Net, its parameters."""
    settings = Settings(torch.device("cpu"), repeats=1, warmup=1, max_seconds=None, max_memory=None)
    for name in ("U-Net", "GAN"):
        small = copy.deepcopy(rows[name])
        report = run_benchmark(small, [custom_case(8, 2, 2)], settings)
        assert report["reference"]["available"] is False and "unet" in report["reference"]["note"]
        assert [r["engine"]["status"] for r in report["rows"]] == ["ok", "ok"]
        assert all(r["parameters"] == 2_703_136 and r["alive_fraction"] is None for r in report["rows"])


def test_a_gan_training_iteration_steps_its_critic():
    from ncacli.bench.table6 import WithCritic
    from ncacli.engine import ModelConfig, build_model

    gan = WithCritic(build_model(ModelConfig(channels=8, architecture="unet", architecture_options={"width": 4})), 8)
    seed, target = torch.rand(2, 8, 8, 8), torch.rand(4, 8, 8)
    train_run(gan, seed, target, 1, 0)()
    critic = gan.loss.critic
    assert critic is not None and gan.loss.last["critic"] > 0
    before = [p.detach().clone() for p in critic.parameters()]
    generator_before = [p.detach().clone() for p in gan.generator.parameters()]
    train_run(gan, seed, target, 1, 0)()
    assert not all(torch.equal(a, b) for a, b in zip(before, critic.parameters(), strict=True))
    moved = max((a - b).abs().max().item() for a, b in zip(generator_before, gan.generator.parameters(), strict=True))
    assert moved < 1e-6, "train_run's tiny rate keeps the generator where it was (the critic has its own rate)"


def test_the_rows_are_laid_beside_the_review_over_the_u_net():
    def report(name, train_s, infer_s, train_mb, infer_mb, parameters):
        row = {"suite": "ncatorch-table6", "parameters": parameters}
        return {"model_source": name, "rows": [
            {**row, "phase": "train", "engine": {"status": "ok", "median_s": train_s, "peak_mb": train_mb}},
            {**row, "phase": "inference", "engine": {"status": "ok", "median_s": infer_s, "peak_mb": infer_mb}},
        ]}  # fmt: skip

    unet, nca = report("U-Net", 0.5, 0.25, 100.0, 200.0, 10), report("NCA Conv 3×3", 2.0, 0.5, 400.0, 50.0, 5)
    out = beside_review([unet, nca])
    nca = out[1]
    assert nca["ours"] == {"parameters": 5, "train_ms": 2000.0, "inference_ms": 500.0, "train_mb": 400.0,
                           "inference_mb": 50.0}  # fmt: skip
    assert nca["over_unet"] == {"train_ms": 4.0, "inference_ms": 2.0, "train_mb": 4.0, "inference_mb": 0.25}
    assert nca["review_over_unet"]["train_ms"] == pytest.approx(29.18 / 3.56)
    assert nca["review_over_unet"]["inference_mb"] == pytest.approx(352.3 / 375.2)
