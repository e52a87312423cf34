"""The single-pass baselines (`--model unet`, `--model pix2pix`): one pass held through a rollout and run again
after a perturbation, training through the same loop, the model file, the growing protocol's stages, pix2pix's
critic, and one line for what a U-Net cannot do."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from conftest import last_json, one_error_line, run_cli
from test_translate import SHRUNK

TINY = ["--iters", "30", "--size", "12", "--padding", "2", "--seed", "1", "--quiet", "--device", "cpu",
        "--set", "batch=4", "--set", "pool_size=8", "--set", "architecture_options.width=4"]  # fmt: skip


def small(k: int = 0, levels: int = 2):
    from ncacli.engine.nca import ModelConfig
    from ncacli.engine.unet import UNet

    torch.manual_seed(0)
    return UNet(ModelConfig(channels=8, condition_channels=k, architecture="unet"), width=4, levels=levels).eval()


def test_a_rollout_is_one_pass_held_and_run_again_after_a_perturbation():
    net = small()
    x = torch.rand(2, 8, 13, 11)  # sides that are not multiples of 4: padded and cropped back
    with torch.no_grad():
        once = net(x)
        assert once.shape == x.shape
        assert torch.equal(net.rollout(x, 1), once) and torch.equal(net.rollout(x, 449), once)
        cut = torch.zeros_like(once)

        def damage(step, state):
            return cut if step == 150 else None

        seen = {}

        def look(step, state):
            seen[step] = state.clone()  # and returns None: the state goes on as it was

        out = net.rollout(x, 449, observe=look)
        assert all(torch.equal(s, once) for s in seen.values()) and torch.equal(out, once)
        out = net.rollout(x, 449, observe=damage)
        assert torch.equal(out, net(cut)) and not torch.equal(out, once)  # the pass repaints the damaged state


def test_a_leaky_u_net_is_the_same_network_with_pix2pix_s_leaky_activations():
    """``activation = "leaky_relu"``: every activation of the network is pix2pix's LeakyReLU (slope 0.2), with
    the weights the ReLU network would start from."""
    from ncacli.engine.nca import ModelConfig
    from ncacli.engine.unet import UNet

    config = ModelConfig(channels=8, architecture="unet")
    torch.manual_seed(0)
    relu = UNet(config, width=4, levels=2)
    torch.manual_seed(0)
    leaky = UNet(config, width=4, levels=2, activation="leaky_relu")
    acts = [m for m in leaky.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert len(acts) == 2 * (2 + 1 + 2) and all(m.negative_slope == 0.2 for m in acts)
    assert not any(isinstance(m, torch.nn.ReLU) for m in leaky.modules())
    for a, b in zip(relu.state_dict().values(), leaky.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    x = torch.rand(1, 8, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(relu(x), leaky(x))  # the same weights, another function


def test_a_condition_that_changes_runs_the_pass_again():
    net = small(k=2)
    x = torch.rand(1, 8, 8, 8)
    a, b = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1), torch.tensor([0.0, 1.0]).view(1, 2, 1, 1)
    with torch.no_grad():
        out = net.rollout(x, 300, condition=lambda step: a if step <= 150 else b)
        assert torch.equal(out, net(net(x, a), b))
        with pytest.raises(ValueError, match="needs a condition"):
            net(x)


def test_a_u_net_learns_the_lizard_and_the_protocol_measures_its_single_pass(capsys, tmp_path):
    out = tmp_path / "unet"
    code, _, err = run_cli(capsys, "train", "--emoji", "🦎", "--preset", "regenerating", "--model", "unet",
                           "--out", out, *TINY, "--set", "lr=3e-3")  # fmt: skip
    assert code == 0, err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = sum(r["loss"] for r in records[:5]) / 5, sum(r["loss"] for r in records[-5:]) / 5
    assert last < 0.7 * first  # it learns
    assert records[-1]["lr"] == 3e-3  # --set says the rate
    code, info, _ = run_cli(capsys, "info", out / "model.safetensors", "--json")
    described = last_json(info)
    assert described["config"]["architecture"] == "unet" and "perception" not in described["config"]
    assert described["parameters"] == sum(
        p.numel() for p in __import__("ncacli.api", fromlist=["load"]).load(out / "model.safetensors").nca.parameters()
    )
    code, text, _ = run_cli(capsys, "evaluate", out, "--metric", "mse", "--trials", "2", "--json")
    assert code == 0
    doc = last_json(text)
    from ncacli.api import load

    model = load(out / "model.safetensors")
    with torch.no_grad():
        picture = model.nca(model.seed(1))[:, :4].clamp(0, 1)
    mse = float(((picture - model.target) ** 2).mean())
    for trial in doc["trials"]:  # the seed's pass, held: the same at stages 1 and 2, whatever the fire masks
        assert trial["mse"]["stage1"] == pytest.approx(mse, rel=1e-5)
        assert trial["mse"]["stage2"] == pytest.approx(mse, rel=1e-5)
        assert trial["mse"]["stage3"] != trial["mse"]["stage2"]  # the damaged picture's pass


def test_pix2pix_trains_the_u_net_against_its_critic(capsys, tmp_path):
    out = tmp_path / "p2p"
    nca_only = ("hidden=", "steps_min=", "steps_max=")  # SHRUNK's keys that only an NCA reads
    shrunk, i = [], 0
    while i < len(SHRUNK):
        if SHRUNK[i] == "--set" and SHRUNK[i + 1].startswith(nca_only):
            i += 2
            continue
        shrunk.append(SHRUNK[i])
        i += 1
    args = [*shrunk, "--set", "architecture_options.width=4", "--set", "objectives.gan.width=8"]
    code, _, err = run_cli(capsys, "train", "--data", "edges2emoji", "--model", "pix2pix", "--out", out, *args)
    assert code == 0, err
    assert "warning" not in err.lower(), err  # nothing the critic reports is read off a graph
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"l1", "gan", "critic", "d_real", "d_fake"} <= set(record)
    assert record["lr"] == 2e-4  # the U-Net's own rate (pix2pix's), not the preset's NCA rate
    with safe_open(str(out / "resume.safetensors"), "pt") as f:
        assert any(k.startswith("objective.0.gan.critic.") for k in f.keys())
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "gan" in k or "critic" in k]
    config = (out / "config.toml").read_text()
    assert 'loss = "l1+gan"' in config and 'architecture = "unet"' in config


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model", "unet", "--set", "perception=conv"], "--set perception: only an NCA reads it"),
        (["--model", "unet", "--set", "steps_min=10"], "--set steps_min: only an NCA reads it"),
        (["--model", "unett"], "unknown model 'unett' (did you mean 'unet'?)"),
        (["--model", "pix2pix", "--loss", "mse"], "--model pix2pix trains with pix2pix's l1+gan"),
        (["--model", "unet", "--set", "architecture_options.depth=3"], "depth"),
        (["--model", "unet", "--set", "architecture_options.activation=gelu"], "relu, leaky_relu"),
        (["--model", "pix2pix", "--set", "objectives.gan.mode=hinge"], "mode must be one of vanilla, lsgan"),
    ],
)
def test_what_a_u_net_does_not_take_is_one_line(capsys, tmp_path, args, needle):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--emoji", "🦎", *args, "--iters", "1", "--out", out, "--quiet")
    one_error_line(err, needle)
    assert code != 0 and not out.exists()


def test_a_u_net_has_no_page_and_no_fractal_growth(capsys, tmp_path):
    out = tmp_path / "unet"
    code, _, err = run_cli(capsys, "train", "--emoji", "🦎", "--model", "unet", "--out", out, *TINY[:1], "1",
                           *TINY[2:])  # fmt: skip
    assert code == 0, err
    model = out / "model.safetensors"
    code, _, err = run_cli(capsys, "render", model, tmp_path / "u.html")
    one_error_line(err, "does not step, so it has no interactive page")
    assert code != 0 and not (tmp_path / "u.html").exists()
    code, _, err = run_cli(capsys, "grow", model, "--zoom", "2", "--out", tmp_path / "z.png")
    one_error_line(err, "does not step")
    assert code != 0 and not (tmp_path / "z.png").exists()
    code, _, err = run_cli(capsys, "render", model, tmp_path / "u.gif", "--steps", "20")
    assert code == 0, err


def test_table1_lays_a_u_net_and_a_gan_beside_the_review_s_rows_of_their_size(monkeypatch):
    import importlib.util
    import sys

    from conftest import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # table1 imports its neighbour perception_table
    spec = importlib.util.spec_from_file_location("table1", ROOT / "benchmarks" / "table1.py")
    table1 = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "table1", table1)
    spec.loader.exec_module(table1)
    figures = {"stages": [0.2, 0.1, 0.12], "recovery": 80.0}
    rows = [
        {"preset": "table1", "architecture": "unet", "loss": "mse", "parameters": 28_534, "iterations": 8000,
         "damage": figures, "mutation": figures},
        {"preset": "table1", "architecture": "unet", "loss": "l1+gan", "parameters": 68_986, "iterations": 8000,
         "damage": figures, "mutation": figures},
        {"preset": "table1-conv3", "architecture": "nca", "loss": "mse", "parameters": 22_976, "iterations": 10,
         "damage": figures, "mutation": figures},
    ]  # fmt: skip
    md = table1.markdown(rows, 20)
    assert "| U-Net (`table1`) | 0.200 / 0.100 / 0.120 | 80.0 |" in md
    assert "| *review* U-Net | — / 0.070 / 0.064 | 100 | — / 0.061 / 0.055 | 99.26 | 25k | |" in md
    assert "| *review* GAN | — / 0.015 / 0.015 | 100 | — / 0.017 / 0.017 | 100 | 69k | |" in md
    assert "| *review* Conv 3x3 | 0.065 / 0.060 / 0.128 |" in md
