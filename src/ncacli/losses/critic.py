"""Objectives with a critic: the Wasserstein critic with gradient penalty (WGAN-GP; the NCAtorch review §3.1.3),
``--loss wgan-gp``, alone or beside a reconstruction term (``--loss l1+wgan-gp``); and pix2pix's conditional
PatchGAN, ``--loss gan`` (``--model pix2pix`` trains a U-Net with ``l1+gan``, L1 weighed 100).

A small convolutional critic scores pictures, conditioned on what the cells read (a translation pair's input is
stacked onto the picture, as pix2pix's discriminator sees its pair). At every training iteration it first takes
``n_critic`` Adam steps on the iteration's rollout (detached) against the batch's real pictures, its loss
``D(fake) − D(real) + λ·(‖∇D(x̂)‖ − 1)²`` at random interpolates ``x̂`` (Gulrajani et al. 2017); then the NCA's term
is ``−D(fake)`` per sample. The critic sees the rollout the NCA trains on rather than ``n_critic`` fresh ones (a
rollout is the dear part of an iteration). The defaults are the WGAN-GP paper's: 5 critic steps, λ 10, Adam 1e-4
with betas (0, 0.9). Its weights and optimiser live in the run's resume file, so ``--resume`` continues exactly,
and never in the model file: growing needs no critic. A critic loss that turns NaN or infinite stops training, the
critic put back as it was before the iteration, and the run resumes from its last checkpoint.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ncacli.errors import NonFiniteLoss, UsageError
from ncacli.losses import Samples


@dataclass(frozen=True)
class CriticOptions:
    """The ``[objectives.wgan-gp]`` section."""

    n_critic: int = 5  # critic steps per NCA step
    gp_weight: float = 10.0  # λ, the gradient penalty's weight
    lr: float = 1e-4  # the critic's Adam learning rate
    beta1: float = 0.0  # the critic's Adam β1 (WGAN-GP: 0)
    beta2: float = 0.9  # the critic's Adam β2 (WGAN-GP: 0.9)
    width: int = 64  # the first layer's channels (doubled at each of the three strided layers)

    def __post_init__(self) -> None:
        if self.n_critic < 1:
            raise UsageError(f"objectives.wgan-gp.n_critic must be at least 1, not {self.n_critic}")
        if self.gp_weight < 0 or self.lr <= 0:
            raise UsageError("objectives.wgan-gp.gp_weight must be 0 or more and lr above 0")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise UsageError(f"objectives.wgan-gp betas must be in [0, 1), not ({self.beta1}, {self.beta2})")
        if self.width < 1:
            raise UsageError(f"objectives.wgan-gp.width must be at least 1, not {self.width}")


GAN_MODES = ("vanilla", "lsgan")


@dataclass(frozen=True)
class GANOptions:
    """The ``[objectives.gan]`` section (pix2pix's defaults)."""

    n_critic: int = 1  # discriminator steps per generator step
    lr: float = 2e-4  # the discriminator's Adam learning rate
    beta1: float = 0.5  # the discriminator's Adam β1 (pix2pix: 0.5)
    beta2: float = 0.999  # the discriminator's Adam β2 (pix2pix: 0.999)
    width: int = 64  # the first layer's channels (doubled at each of the three strided layers)
    mode: str = "vanilla"  # pix2pix's --gan_mode: vanilla (cross-entropy) or lsgan (least squares)

    def __post_init__(self) -> None:
        CriticOptions(self.n_critic, 0.0, self.lr, self.beta1, self.beta2, self.width)  # the same checks
        if self.mode not in GAN_MODES:
            raise UsageError(f"objectives.gan.mode must be one of {', '.join(GAN_MODES)}, not {self.mode!r}")


class Critic(nn.Module):
    """Pictures ``(B, in_channels, H, W)`` → one score each ``(B,)``: three 4×4 stride-2 convolutions with leaky
    ReLUs (no normalisation: the gradient penalty is per sample), a 3×3 one to a score map, averaged (a PatchGAN
    critic, so it judges local texture at any grid size)."""

    def __init__(self, in_channels: int, width: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for k in range(3):
            layers += [nn.Conv2d(channels, width * 2**k, 4, 2, 1), nn.LeakyReLU(0.2)]
            channels = width * 2**k
        layers.append(nn.Conv2d(channels, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """The score of each patch ``(B, 1, H/8, W/8)``."""
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(x).mean(dim=(1, 2, 3))


class Adversarial:
    """An objective with a critic of its own: the model's term per sample, the critic trained first on each
    rollout that is being trained on (see the module). Subclasses give the two losses."""

    Options: Any = CriticOptions
    takes_samples = True
    needs_real = True
    name = "an adversarial objective"

    def __init__(self, target: torch.Tensor | None, config: Any, **options: Any) -> None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UsageError(f"--loss {self.name} trains one critic in one process; it does not run under torchrun")
        self.options = self.Options(**options)
        self.target = target
        self.critic: Critic | None = None
        self.optimizer: torch.optim.Adam | None = None
        self.generator: torch.Generator | None = None  # the trainer's: the interpolation weights
        self.last: dict[str, float] = {}
        self.pending: dict[str, torch.Tensor] | None = None  # a resumed run's critic, until the first call

    def build(self, in_channels: int, device: torch.device) -> None:
        o = self.options
        self.critic = Critic(in_channels, o.width).to(device)
        self.optimizer = torch.optim.Adam(self.critic.parameters(), lr=o.lr, betas=(o.beta1, o.beta2))

    @staticmethod
    def pictures(rgba: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """What the critic sees: the picture, and what the cells read stacked onto it (a class, broadcast)."""
        if condition is None:
            return rgba
        return torch.cat([rgba, condition.to(rgba.dtype).expand(-1, -1, *rgba.shape[2:])], dim=1)

    def real_of(self, state: torch.Tensor, samples: Samples | None) -> torch.Tensor:
        real = samples.real if samples is not None else None
        if real is None:
            if self.target is None:
                raise UsageError(f"--loss {self.name} needs real pictures to judge against, and this task has none")
            real = self.target.expand(state.shape[0], *self.target.shape[-3:])
        return real

    def train_critic(self, fake: torch.Tensor, real: torch.Tensor, condition: torch.Tensor | None) -> None:
        assert self.critic is not None and self.optimizer is not None
        o = self.options
        # the critic as it was, to go back to if a step diverges: the run then resumes from a sound critic
        before = copy.deepcopy((self.critic.state_dict(), self.optimizer.state_dict()))
        for _ in range(o.n_critic):
            loss, report = self.critic_loss(real, fake, condition)
            value = float(loss.detach())
            if not torch.isfinite(loss):
                self.critic.load_state_dict(before[0])
                self.optimizer.load_state_dict(before[1])
                raise NonFiniteLoss(0, value, "the critic's loss")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.last = {"critic": value, **report}

    def critic_loss(
        self, real: torch.Tensor, fake: torch.Tensor, condition: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The critic's loss, and what it reports."""
        raise NotImplementedError

    def model_loss(self, fake: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """The model's term per sample ``(B,)``, differentiable with respect to ``fake``."""
        raise NotImplementedError

    def __call__(self, state: torch.Tensor, samples: Samples | None = None) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B,)``: the model's term (:meth:`model_loss`). A rollout being trained on (one that
        carries gradients) trains the critic first; any other call (a pool sorted by loss) only scores."""
        fake = state[:, :4]
        condition = samples.condition if samples is not None else None
        if self.critic is None and self.pending is not None:
            self.restore(state.device)
        if self.critic is None:
            self.build(4 + (0 if condition is None else condition.shape[1]), state.device)
        assert self.critic is not None
        if fake.requires_grad and torch.is_grad_enabled():
            self.train_critic(fake.detach(), self.real_of(state, samples), condition)
        self.critic.requires_grad_(False)  # the NCA's gradient flows through the critic, not into it
        try:
            return self.model_loss(fake, condition)
        finally:
            self.critic.requires_grad_(True)

    # the critic and its optimiser, in the run's resume file
    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.pending is not None:  # resumed and saved again before a call
            return dict(self.pending)
        if self.critic is None or self.optimizer is None:
            return {}
        out = {f"critic.{k}": v for k, v in self.critic.state_dict().items()}
        names = {id(p): n for n, p in self.critic.named_parameters()}
        for p, st in self.optimizer.state.items():
            for key, value in st.items():
                out[f"adam.{names[id(p)]}.{key}"] = torch.as_tensor(value)
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Kept until the first call, which knows the device (a run saved before the critic's first step has
        none)."""
        self.pending = tensors if "critic.net.0.weight" in tensors else None

    def restore(self, device: torch.device) -> None:
        tensors, self.pending = self.pending, None
        assert tensors is not None
        self.build(int(tensors["critic.net.0.weight"].shape[1]), device)
        assert self.critic is not None and self.optimizer is not None
        self.critic.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("critic.")})
        for name, p in self.critic.named_parameters():
            st = {k.rsplit(".", 1)[1]: v.to(device) for k, v in tensors.items() if k.startswith(f"adam.{name}.")}
            if st:
                st["step"] = st["step"].cpu()
                self.optimizer.state[p] = st


class WGANGPLoss(Adversarial):
    """WGAN-GP: the critic's loss ``D(fake) − D(real) + λ·(‖∇D(x̂)‖ − 1)²``, the model's term ``−D(fake)``."""

    Options = CriticOptions
    name = "wgan-gp"

    def critic_loss(
        self, real: torch.Tensor, fake: torch.Tensor, condition: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        assert self.critic is not None
        eps = torch.rand(fake.shape[0], 1, 1, 1, generator=self.generator, device=fake.device)
        mixed = (eps * real + (1.0 - eps) * fake).requires_grad_(True)
        scored = self.critic(self.pictures(mixed, condition))
        (grad,) = torch.autograd.grad(scored.sum(), mixed, create_graph=True)
        penalty = ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()
        d_real = self.critic(self.pictures(real, condition)).mean()
        d_fake = self.critic(self.pictures(fake, condition)).mean()
        loss = d_fake - d_real + self.options.gp_weight * penalty
        return loss, {"wasserstein": float((d_real - d_fake).detach()), "gp": float(penalty.detach())}

    def model_loss(self, fake: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        assert self.critic is not None
        return -self.critic(self.pictures(fake, condition))


class GANLoss(Adversarial):
    """pix2pix's conditional GAN: a PatchGAN discriminator judging each patch real or fake, its loss halved as
    pix2pix halves it. ``mode`` is pix2pix's ``--gan_mode``: ``vanilla`` (the default), a cross-entropy
    ``[BCE(D(real), 1) + BCE(D(fake), 0)] / 2`` and the model's term ``BCE(D(fake), 1)`` over the patches (the
    non-saturating loss); ``lsgan`` (Mao et al. 2017), least squares ``[(D(real) − 1)² + D(fake)²] / 2`` and
    ``(D(fake) − 1)²``, whose scores stay near their targets where a winning cross-entropy critic's grow without
    bound. Defaults are pix2pix's: one discriminator step per model step, Adam 2e-4 with betas (0.5, 0.999)."""

    Options = GANOptions
    name = "gan"

    def distance(self, scores: torch.Tensor, real: bool, reduction: str = "mean") -> torch.Tensor:
        """How far patch scores are from the label ``real``: the mode's cross-entropy or squared error."""
        label = torch.full_like(scores, float(real))
        if self.options.mode == "lsgan":
            return F.mse_loss(scores, label, reduction=reduction)
        return F.binary_cross_entropy_with_logits(scores, label, reduction=reduction)

    def critic_loss(
        self, real: torch.Tensor, fake: torch.Tensor, condition: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        assert self.critic is not None
        on_real = self.critic.scores(self.pictures(real, condition))
        on_fake = self.critic.scores(self.pictures(fake, condition))
        loss = 0.5 * (self.distance(on_real, True) + self.distance(on_fake, False))
        judged = (lambda s: s) if self.options.mode == "lsgan" else torch.sigmoid  # what D says: 1 real, 0 fake
        seen = {"d_real": float(judged(on_real.detach()).mean()), "d_fake": float(judged(on_fake.detach()).mean())}
        return loss, seen

    def model_loss(self, fake: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        assert self.critic is not None
        on_fake = self.critic.scores(self.pictures(fake, condition))
        return self.distance(on_fake, True, reduction="none").mean(dim=(1, 2, 3))
