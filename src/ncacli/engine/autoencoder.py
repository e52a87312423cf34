"""The autoencoder a latent NCA lives in (the NCAtorch review §3.1.4–3.1.5): a convolutional VQ-VAE, or a plain
autoencoder, with ``2**levels`` spatial compression (8× for the default 3 levels).

The encoder maps premultiplied RGBA ``(B, 4, H, W)`` to a latent grid ``(B, L, H/8, W/8)``; the decoder maps a
latent grid back to RGBA in [0, 1]. A VQ-VAE's decoder snaps each latent cell to its nearest codebook vector
first, passing gradients straight through (van den Oord et al. 2017), so the NCA, which evolves continuous
latents, is trained through the same decoder the codebook was fitted with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("vqvae", "ae")


@dataclass(frozen=True)
class AutoencoderConfig:
    kind: str = "vqvae"  # vqvae (a codebook between encoder and decoder) or ae (none)
    latent: int = 8  # latent channels per cell
    levels: int = 3  # halvings: the latent grid is 2**levels times smaller each way
    width: int = 16  # channels at full resolution, doubled at each of the first two levels
    codes: int = 256  # codebook size (vqvae)
    commitment: float = 0.25  # β of the commitment term (vqvae)

    @property
    def factor(self) -> int:
        return 2**self.levels

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AutoencoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown autoencoder keys {unknown}")
        return cls(**data)

    def check(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"autoencoder kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not 1 <= self.levels <= 6 or self.latent < 1 or self.width < 1 or self.codes < 2:
            raise ValueError(f"autoencoder settings out of range: {self.to_dict()}")


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Autoencoder(nn.Module):
    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        config.check()
        self.config = config
        w = [config.width * 2 ** min(i, 2) for i in range(config.levels + 1)]
        down: list[nn.Module] = [nn.Conv2d(4, w[0], 3, padding=1)]
        for i in range(config.levels):
            down += [nn.ReLU(), nn.Conv2d(w[i], w[i + 1], 4, stride=2, padding=1)]
        down += [_Residual(w[-1]), nn.ReLU(), nn.Conv2d(w[-1], config.latent, 1)]
        self.encoder = nn.Sequential(*down)
        up: list[nn.Module] = [nn.Conv2d(config.latent, w[-1], 3, padding=1), _Residual(w[-1])]
        for i in reversed(range(config.levels)):
            up += [nn.ReLU(), nn.ConvTranspose2d(w[i + 1], w[i], 4, stride=2, padding=1)]
        up += [nn.ReLU(), nn.Conv2d(w[0], 4, 3, padding=1)]
        self.decoder = nn.Sequential(*up)
        if config.kind == "vqvae":
            self.codebook = nn.Parameter(torch.randn(config.codes, config.latent) * 0.5)
        else:
            self.register_parameter("codebook", None)

    def encode(self, rgba: torch.Tensor) -> torch.Tensor:
        """RGBA ``(B, 4, H, W)`` → continuous latents ``(B, L, H/f, W/f)``."""
        return self.encoder(rgba)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each latent cell snapped to its nearest code, gradients straight through → ``(z_q, codes (B, h, w))``."""
        if self.codebook is None:
            return z, torch.zeros(z.shape[0], *z.shape[2:], dtype=torch.long, device=z.device)
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        distance = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t()) + self.codebook.pow(2).sum(1)
        index = distance.argmin(1)
        q = self.codebook[index].view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        return z + (q - z).detach(), index.view(z.shape[0], *z.shape[2:])

    def decode(self, z: torch.Tensor, quantize: bool = True) -> torch.Tensor:
        """Latents ``(B, L, h, w)`` → premultiplied RGBA ``(B, 4, h·f, w·f)`` in [0, 1]; ``quantize=False`` decodes
        the latents as they are, without snapping them to the codebook first."""
        q = self.quantize(z)[0] if quantize else z
        out = torch.sigmoid(self.decoder(q))
        alpha = out[:, 3:4]
        return torch.cat([out[:, :3] * alpha, alpha], dim=1)

    def forward(self, rgba: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction and the VQ term (codebook + β·commitment; 0 for a plain autoencoder)."""
        z = self.encode(rgba)
        if self.codebook is None:
            return self.decode(z), z.new_zeros(())
        q, index = self.quantize(z)
        codes = self.codebook[index].permute(0, 3, 1, 2)
        vq = F.mse_loss(codes, z.detach()) + self.config.commitment * F.mse_loss(z, codes.detach())
        out = torch.sigmoid(self.decoder(q))
        alpha = out[:, 3:4]
        return torch.cat([out[:, :3] * alpha, alpha], dim=1), vq

    def tensors(self, prefix: str = "task.autoencoder.") -> dict[str, torch.Tensor]:
        return {prefix + k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}

    @classmethod
    def from_tensors(
        cls, config: AutoencoderConfig, tensors: dict[str, torch.Tensor], prefix: str = "task.autoencoder."
    ) -> Autoencoder:
        """Rebuilt from a model file's tensors; raises ValueError when they are not this architecture's."""
        model = cls(config)
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        want = model.state_dict()
        missing = sorted(set(want) - set(state))
        extra = sorted(set(state) - set(want))
        if missing or extra:
            raise ValueError(
                f"autoencoder tensors do not match its settings (missing {missing[:3]}, extra {extra[:3]})"
            )
        for k, v in state.items():
            if tuple(v.shape) != tuple(want[k].shape):
                raise ValueError(f"autoencoder tensor {k} is {list(v.shape)}, its settings make {list(want[k].shape)}")
            if not torch.isfinite(v).all():
                raise ValueError(f"autoencoder tensor {k} is not finite")
        model.load_state_dict(state)
        return model.eval().requires_grad_(False)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
