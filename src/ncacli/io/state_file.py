"""Grid states as safetensors: tensor ``state`` ``(B, C, H, W)`` float32 plus metadata."""

from __future__ import annotations

import torch

from ncacli.errors import NcaError
from ncacli.io.files import pack, unpack

FORMAT = "nca-state"


def state_bytes(state: torch.Tensor, step: int = 0) -> bytes:
    meta = {"format": FORMAT, "format_version": "1", "channels": str(state.shape[1]), "step": str(step)}
    return pack({"state": state.float()}, meta)


def parse_state(data: bytes, name: str) -> tuple[torch.Tensor, int]:
    """→ ``(state (B, C, H, W), step)``."""
    tensors, meta = unpack(data, name)
    if meta.get("format") != FORMAT or "state" not in tensors:
        found = meta.get("format")
        raise NcaError(f"{name}: {'a ' + repr(found) + ' file' if found else 'a safetensors file'}, not an nca state")
    state = tensors["state"]
    if state.ndim != 4:
        raise NcaError(f"{name}: state must be (B, C, H, W), got shape {tuple(state.shape)}")
    return state.float(), int(meta.get("step", "0"))


def check_channels(state: torch.Tensor, channels: int, name: str) -> None:
    if state.shape[1] != channels:
        raise NcaError(f"{name}: state has {state.shape[1]} channels but the model expects {channels}")
