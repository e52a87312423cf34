"""The WGAN-GP objective: the critic learns to tell real from grown pictures, the NCA's gradient flows through it
without training it, it lives in the resume file (a resumed run continues exactly) and not in the model file, a
diverging critic stops training with one line, and a critic where there are no real pictures is refused."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from conftest import one_error_line, run_cli
from test_translate import SHRUNK


def small_critic(**options):
    from ncacli.losses.critic import WGANGPLoss

    return WGANGPLoss(None, None, **{"width": 8, **options})


def pictures(seed: int, n: int = 4):
    g = torch.Generator().manual_seed(seed)
    real = torch.zeros(n, 4, 16, 16)
    real[:, :, 4:12, 4:12] = torch.rand(n, 4, 1, 1, generator=g) * 0.5 + 0.5  # a bright square each
    fake = torch.rand(n, 4, 16, 16, generator=g) * 0.2  # dim noise
    condition = (real[:, 3:] > 0).float()
    return real, fake, condition


def test_the_critic_learns_to_tell_real_from_grown_pictures():
    from ncacli.losses import Samples

    torch.manual_seed(0)
    loss = small_critic(n_critic=1, lr=1e-3)
    real, fake, condition = pictures(0)
    samples = Samples(real=real, condition=condition)
    gaps = []
    for _ in range(40):
        state = fake.clone().requires_grad_(True)  # a rollout being trained on: the critic steps first
        loss(state, samples)
        gaps.append(loss.last["wasserstein"])
    assert gaps[-1] > gaps[0] + 0.5 and gaps[-1] > 0.5
    assert loss.critic is not None and loss.critic.net[0].in_channels == 5  # the picture and the input beside it
    scored = loss.critic(torch.cat([real, condition], 1)) - loss.critic(torch.cat([fake, condition], 1))
    assert bool((scored > 0).all())  # each real picture scores above each grown one


def test_the_nca_s_gradient_flows_through_the_critic_without_training_it():
    from ncacli.losses import Samples

    loss = small_critic()
    real, fake, condition = pictures(1)
    samples = Samples(real=real, condition=condition)
    with torch.no_grad():  # a pool sorted by its loss: the critic is built, scores, and does not learn
        loss(fake, samples)
    before = [p.detach().clone() for p in loss.critic.parameters()]
    state = fake.clone()
    loss(state, samples)  # no gradient: no training either
    assert all(torch.equal(a, b) for a, b in zip(before, loss.critic.parameters(), strict=True))
    state = fake.clone().requires_grad_(True)
    value = loss(state, samples)
    trained = [p.detach().clone() for p in loss.critic.parameters()]
    assert not all(torch.equal(a, b) for a, b in zip(before, trained, strict=True))
    for p in loss.critic.parameters():
        p.grad = None
    value.sum().backward()
    assert state.grad is not None and float(state.grad.abs().sum()) > 0
    params = list(loss.critic.parameters())
    assert all(p.grad is None for p in params) and all(p.requires_grad for p in params)


@pytest.mark.parametrize("mode", ["vanilla", "lsgan"])
def test_pix2pix_s_discriminator_losses_in_each_mode(mode):
    """pix2pix's two ``--gan_mode``s on the same patch scores: vanilla a cross-entropy of the logits, lsgan a
    squared distance of the scores themselves (1 real, 0 fake); the discriminator's loss is halved, the model's
    term is per sample. Then a few steps of each separate real from grown pictures."""
    from ncacli.losses import Samples
    from ncacli.losses.critic import GANLoss

    torch.manual_seed(0)
    loss = GANLoss(None, None, width=8, mode=mode, lr=1e-3)
    real, fake, condition = pictures(2)
    loss.build(5, torch.device("cpu"))
    with torch.no_grad():
        on_real = loss.critic.scores(torch.cat([real, condition], 1))
        on_fake = loss.critic.scores(torch.cat([fake, condition], 1))
        critic, seen = loss.critic_loss(real, fake, condition)
        model = loss.model_loss(fake, condition)
    if mode == "lsgan":
        want = 0.5 * (((on_real - 1) ** 2).mean() + (on_fake**2).mean())
        want_model = ((on_fake - 1) ** 2).mean(dim=(1, 2, 3))
        said = (on_real.mean(), on_fake.mean())
    else:
        want = 0.5 * (-torch.log(torch.sigmoid(on_real)).mean() - torch.log(1 - torch.sigmoid(on_fake)).mean())
        want_model = -torch.log(torch.sigmoid(on_fake)).mean(dim=(1, 2, 3))
        said = (torch.sigmoid(on_real).mean(), torch.sigmoid(on_fake).mean())
    assert float(critic) == pytest.approx(float(want), rel=1e-5)
    assert model.shape == (4,) and torch.allclose(model, want_model, rtol=1e-5)
    assert (seen["d_real"], seen["d_fake"]) == pytest.approx((float(said[0]), float(said[1])), rel=1e-5)
    samples = Samples(real=real, condition=condition)
    for _ in range(30):
        loss(fake.clone().requires_grad_(True), samples)
    assert loss.last["d_real"] > 0.7 and loss.last["d_fake"] < 0.3, loss.last


def test_the_gradient_penalty_pulls_the_critic_s_slope_towards_one():
    """With the penalty alone (real and grown pictures the same, so the Wasserstein term is zero), the critic's
    gradient norm at the interpolates moves to 1 from wherever it starts."""
    from ncacli.losses import Samples

    torch.manual_seed(2)
    real, _, condition = pictures(2)
    loss = small_critic(n_critic=1, lr=3e-3)
    state = real.clone().requires_grad_(True)
    penalties = []
    for _ in range(60):
        loss(state, Samples(real=real, condition=condition))
        penalties.append(loss.last["gp"])
    assert penalties[0] > 0.5 and penalties[-1] < 0.1 * penalties[0]


def train(capsys, out, *extra):
    return run_cli(capsys, "train", "--task", "translate", "--data", "edges2emoji", "--out", out, *SHRUNK,
                   "--set", "objectives.wgan-gp.width=8", *extra)  # fmt: skip


def tensors_of(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_a_resumed_critic_run_continues_exactly_and_the_model_file_has_no_critic(capsys, tmp_path):
    code, _, err = train(capsys, tmp_path / "full", "--loss", "l1+wgan-gp")
    assert code == 0, err
    code, _, err = train(capsys, tmp_path / "half", "--loss", "l1+wgan-gp", "--iters", "2")
    assert code == 0, err
    code, _, err = run_cli(capsys, "train", "--resume", tmp_path / "half", "--iters", "4", "--quiet")
    assert code == 0, err
    full = tensors_of(tmp_path / "full" / "resume.safetensors")
    half = tensors_of(tmp_path / "half" / "resume.safetensors")
    critic = [k for k in full if k.startswith("objective.0.wgan-gp.")]
    assert any(".critic." in k for k in critic) and any(".adam." in k for k in critic)
    assert set(full) == set(half)
    for k in full:  # the same arithmetic on the same machine: exactly equal
        assert torch.equal(full[k], half[k]), k
    assert not [k for k in tensors_of(tmp_path / "full" / "model.safetensors") if "wgan" in k or "critic" in k]
    records = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert {"l1", "wgan-gp", "critic", "wasserstein", "gp"} <= set(records[-1])  # both losses logged


def test_a_diverging_critic_stops_before_it_steps():
    from ncacli.errors import NonFiniteLoss
    from ncacli.losses import Samples

    loss = small_critic()
    real, fake, condition = pictures(3)
    with torch.no_grad():
        loss(fake, Samples(real=real, condition=condition))
    before = [p.detach().clone() for p in loss.critic.parameters()]
    fake[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLoss, match="the critic's loss became nan"):
        loss(fake.requires_grad_(True), Samples(real=real, condition=condition))
    assert all(torch.equal(a, b) for a, b in zip(before, loss.critic.parameters(), strict=True))


def test_a_run_whose_critic_diverges_stops_with_one_line_and_resumes(capsys, tmp_path):
    """Two good iterations, then the critic's learning rate is made absurd in the run's config: the resumed run
    stops with one line naming the critic, keeps its last good checkpoint, and resumes once the config is mended."""
    out = tmp_path / "run"
    code, _, err = train(capsys, out, "--loss", "wgan-gp", "--iters", "2")
    assert code == 0, err
    config = out / "config.toml"
    good = config.read_text()
    assert "[objectives.wgan-gp]" in good
    config.write_text(good.replace("[objectives.wgan-gp]", "[objectives.wgan-gp]\nlr = 1e30\ngp_weight = 0.0"))
    code, _, err = run_cli(capsys, "train", "--resume", out, "--iters", "6", "--quiet")
    assert code != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("nca: error: ") and "became" in last and "last good checkpoint" in last, err
    resume = tensors_of(out / "resume.safetensors")
    assert all(bool(torch.isfinite(v).all()) for k, v in resume.items() if k.startswith(("model.", "objective.")))
    config.write_text(good)
    code, _, err = run_cli(capsys, "train", "--resume", out, "--iters", "6", "--quiet")
    assert code == 0, err


def test_a_conditional_model_s_critic_sees_each_sample_beside_its_class(capsys, tmp_path):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--emoji", "🦎", "--emoji", "🐠", "--loss", "mse+wgan-gp", "--iters", "2",
                           "--size", "12", "--padding", "2", "--set", "batch=4", "--set", "steps_min=8",
                           "--set", "steps_max=10", "--set", "objectives.wgan-gp.width=8", "--out", out,
                           "--quiet")  # fmt: skip
    assert code == 0, err
    resume = tensors_of(out / "resume.safetensors")
    assert resume["objective.0.wgan-gp.critic.net.0.weight"].shape[1] == 4 + 2  # the picture and its class
    assert not [k for k in resume if k.startswith("objective.1.")]  # one objective judges the whole batch


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--task", "classify", "--data", "digits", "--loss", "wgan-gp"], "has none to give it"),
        (["--data", "edges2emoji", "--loss", "wgan-gp", "--set", "objectives.wgan-gp.n_critic=0"], "n_critic"),
        (["--data", "edges2emoji", "--loss", "style", "--style", "skimage:grass"], "or wgan-gp or gan;"),
    ],
)
def test_a_critic_where_it_cannot_learn_is_one_line(capsys, tmp_path, args, needle):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *args, "--iters", "1", "--out", out, "--quiet")
    one_error_line(err, needle)
    assert code != 0 and not out.exists()
