"""The rows of the NCAtorch review's Table 6 (Appendix A.6): what `nca benchmark --suite ncatorch-table6` times
when no model file is named, with random weights, beside the review's figures.

- **U-Net**: the single-pass baseline (:class:`ncacli.engine.unet.UNet`), width 70 at two levels: 2,703,136
  parameters beside the review's 2,768,772.
- **GAN**: the same U-Net, a training iteration also taking one step of pix2pix's PatchGAN discriminator
  (:class:`ncacli.losses.critic.GANLoss`, width 64) and its adversarial term; inference is the U-Net's (the
  review counts the parameters at inference, without the critic).
- **NCA Conv 3×3**: the review's module (a full 3×3 convolution to 80 features, leaky ReLU, the state not passed
  on; an 80→80→16 update): 19,376 parameters, exactly the review's.
- **NCA Attention**: local self-attention over 3×3 neighbourhoods (6 features a channel, 128 hidden): 18,713
  beside the review's 18,132.

The review measured on an RTX 4090; a CPU's absolute times do not compare, so each row is also given over the
U-Net's, beside the review's own ratios.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ncacli.engine import NCA, ModelConfig

# the review's Table 6: parameters at inference, train ms/step, inference latency (ms), peak train and inference
# memory (MB)
REVIEW = {
    "U-Net": (2_768_772, 3.56, 1.00, 195.7, 375.2),
    "GAN": (2_768_772, 11.55, 0.97, 313.5, 417.3),
    "NCA Conv 3×3": (19_376, 29.18, 6.63, 2813.2, 352.3),
    "NCA Attention": (18_132, 201.57, 13.77, 17444.6, 2994.4),
}
FIGURES = ("parameters", "train_ms", "inference_ms", "train_mb", "inference_mb")
UNET = ModelConfig(channels=16, architecture="unet", architecture_options={"width": 70, "levels": 2})
CONV3 = ModelConfig(
    channels=16, hidden=80, perception="conv", update_options={"activation": "leaky_relu"},
    perception_options={"mode": "full", "kernel_size": 3, "out_features": 80, "activation": "leaky_relu",
                        "keep_state": False},
)  # fmt: skip
ATTENTION = ModelConfig(channels=16, hidden=128, perception="attention", perception_options={"features": 6})


class WithCritic(nn.Module):
    """A generator trained against pix2pix's discriminator: :meth:`adversarial` takes the discriminator's step
    and gives the generator's adversarial term; everything else (the rollout, the parameters at inference) is the
    generator's."""

    def __init__(self, generator: nn.Module, width: int = 64) -> None:
        super().__init__()
        from ncacli.losses.critic import GANLoss

        self.generator = generator
        self.config = generator.config
        self.loss = GANLoss(None, None, width=width)

    def rollout(self, x: torch.Tensor, steps: int, generator: Any = None, **options: Any) -> torch.Tensor:
        return self.generator.rollout(x, steps, generator, **options)

    def adversarial(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The discriminator's step on ``out`` (detached) against ``target``, then the generator's term."""
        from ncacli.losses import Samples

        real = target.expand(out.shape[0], *target.shape[-3:])
        return self.loss(out, Samples(real=real)).mean()

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.generator.parameters())


def random_weights(model: nn.Module, seed: int) -> nn.Module:
    """Zero-initialised parameters (an NCA's last layer) given small random values, so a rollout changes the
    state as a trained model's does; the global RNG left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                if not p.any():
                    p.normal_(0, 0.02)
    return model


def subjects(device: torch.device, seed: int) -> list[tuple[str, nn.Module]]:
    """The four rows' models, by the review's names, on ``device``."""
    from ncacli.engine import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = build_model(UNET)
        gan = WithCritic(build_model(UNET))
        conv, attention = NCA(CONV3), NCA(ATTENTION)
    rows = {"U-Net": unet, "GAN": gan, "NCA Conv 3×3": conv, "NCA Attention": attention}
    return [(name, random_weights(model, seed).to(device)) for name, model in rows.items()]


def parameters_at_inference(model: nn.Module) -> int:
    count = getattr(model, "parameter_count", None)
    return int(count()) if callable(count) else sum(p.numel() for p in model.parameters())


def figures(report: dict[str, Any]) -> dict[str, float | None]:
    """A Table 6 row from a report of the suite: parameters, train and inference ms, peak train and inference MB."""
    rows = {row["phase"]: row for row in report["rows"] if row["suite"] == "ncatorch-table6"}
    out: dict[str, float | None] = {"parameters": rows["train"]["parameters"] if "train" in rows else None}
    for phase in ("train", "inference"):
        engine = rows.get(phase, {}).get("engine") or {}
        ok = engine.get("status") == "ok"
        out[f"{phase}_ms"] = engine["median_s"] * 1000 if ok else None
        out[f"{phase}_mb"] = engine.get("peak_mb") if ok else None
    return out


def beside_review(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's figures and its figures over the U-Net's, beside the review's (its RTX 4090's)."""
    ours = {report["model_source"]: figures(report) for report in reports}
    base = ours.get("U-Net")
    out = []
    for name, row in ours.items():
        theirs = dict(zip(FIGURES, REVIEW[name], strict=True)) if name in REVIEW else None
        entry: dict[str, Any] = {"model": name, "ours": row, "review": theirs, "over_unet": {}, "review_over_unet": {}}
        for key in FIGURES[1:]:
            mine, first = row.get(key), (base or {}).get(key)
            entry["over_unet"][key] = mine / first if mine is not None and first else None
            if theirs is not None:
                entry["review_over_unet"][key] = theirs[key] / REVIEW["U-Net"][FIGURES.index(key)]
        out.append(entry)
    return out
