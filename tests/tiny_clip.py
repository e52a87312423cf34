"""A tiny open_clip model with seeded random weights, written to disk for tests (no downloads).

Not a test file: the tests import it. Random weights are fine here; the product never builds them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

NAME = "nca-tiny-clip"

TINY_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def _tiny_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """The tiny model's weights: open_clip builds :data:`TINY_CFG` after ``torch.manual_seed(seed)``."""
    import logging
    import tempfile

    import open_clip

    if NAME not in open_clip.list_models():
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / f"{NAME}.json"
            config.write_text(json.dumps(TINY_CFG), encoding="utf-8")
            open_clip.add_model_config(config)
    rng = torch.random.get_rng_state()
    level = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # "initialized randomly": that is the point here
    try:
        torch.manual_seed(seed)
        model = open_clip.create_model(NAME, pretrained=None)
    finally:
        logging.disable(level)
        torch.random.set_rng_state(rng)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def write_tiny_clip(directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write ``nca-tiny-clip.json`` (open_clip's model config) and ``nca-tiny-clip.safetensors`` → both paths."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / f"{NAME}.json"
    weights = directory / f"{NAME}.safetensors"
    config.write_text(json.dumps(TINY_CFG, indent=2), encoding="utf-8")
    save_file(_tiny_state_dict(seed), str(weights))
    return config, weights


def write_tiny_clip_folder(directory: Path, seed: int = 0) -> Path:
    """Write a ``local-dir:`` folder: ``open_clip_config.json`` and ``open_clip_model.safetensors`` → the folder."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG}, indent=2), encoding="utf-8")
    save_file(_tiny_state_dict(seed), str(directory / "open_clip_model.safetensors"))
    return directory
