"""Pretrained backbone weights for LPIPS and the VGG16 style loss: which file, and reading it.

A user with a network never names a file: torchvision downloads its own into its cache
(``$TORCH_HOME/hub/checkpoints``). A machine without one names a local copy once, for every run, with an
environment variable (``NCA_ALEXNET_WEIGHTS``, ``NCA_VGG16_WEIGHTS``, ``NCA_SQUEEZENET_WEIGHTS``), or for
one run with ``--lpips-weights FILE`` / ``--vgg-weights FILE``; the option wins over the variable, the
variable over the cache. A file is a torchvision state dict of the whole network or of its ``features``
part only (``features.*`` keys), read with ``weights_only=True`` (no pickled code runs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

# backbone → the variable naming its local weights file
VARIABLES = {
    "alexnet": "NCA_ALEXNET_WEIGHTS",
    "vgg16": "NCA_VGG16_WEIGHTS",
    "squeezenet1_1": "NCA_SQUEEZENET_WEIGHTS",
}

NAMES = {"alexnet": "AlexNet", "vgg16": "VGG16", "squeezenet1_1": "SqueezeNet 1.1"}  # in words
# LPIPS's name of a backbone → torchvision's
LPIPS_BACKBONES = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}


class WeightsFileError(ValueError):
    """A weights file that is missing or is not the backbone's; its message is one line."""


def weights_file(backbone: str, given: str | None = None) -> str | None:
    """The local weights file for ``backbone``: ``given`` (an option's value) if any, else the backbone's
    environment variable if set, else ``None`` (torchvision's cache). ``"random"`` passes through."""
    if given:
        return given
    return os.environ.get(VARIABLES[backbone]) or None


def source_of(backbone: str, given: str | None) -> str:
    """Where the weights come from, in words for a report: the option, the variable, or the cache."""
    if given:
        return given
    variable = VARIABLES[backbone]
    if os.environ.get(variable):
        return f"{os.environ[variable]} (${variable})"
    return "torchvision cache"


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", None) or exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def load_features(features: torch.nn.Module, state: Any) -> None:
    """Copy the ``features.*`` tensors of a torchvision state dict (whole network or features only) into
    ``features``, a torchvision ``features`` sequential."""
    if not isinstance(state, dict):
        raise ValueError(f"a {type(state).__name__}, not a state dict")
    own = {k[len("features.") :]: v for k, v in state.items() if isinstance(k, str) and k.startswith("features.")}
    if not own:
        raise ValueError("no features.* keys")
    features.load_state_dict(own)


def read_features(path: str, backbone: str, features: torch.nn.Module, option: str) -> None:
    """:func:`load_features` from the file ``path``, named by ``option`` or the backbone's variable.
    Raises :class:`WeightsFileError` with one line naming the file and where it was named."""
    variable = VARIABLES[backbone]
    named = f"${variable}" if os.environ.get(variable) == path else option
    if not Path(path).is_file():
        raise WeightsFileError(f"{path}: {NAMES[backbone]} weights file not found ({named})")
    try:
        load_features(features, torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:
        raise WeightsFileError(
            f"{path}: not torchvision {NAMES[backbone]} weights ({first_line(exc)}; {named})"
        ) from None
