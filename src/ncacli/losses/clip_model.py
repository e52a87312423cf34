"""Loading CLIP through open_clip, for the text-guided objective.

``clip_model`` is an open_clip name (``ViT-B-32``), ``local-dir:FOLDER`` (a folder holding
``open_clip_config.json`` and the weights), or a model config JSON file in open_clip's format;
``clip_pretrained`` is an open_clip tag of that model (``openai``), a weights file, or a folder.
Weights for a tag are taken from the Hugging Face cache, or downloaded when the hub can be
reached; offline and not cached is one error that names the file to fetch, within seconds.

Note: OpenAI's CLIP weights were trained with QuickGELU. The tag ``openai`` switches it on by
itself, but a local file of OpenAI weights needs the ``-quickgelu`` model:
``--clip-model ViT-B-32-quickgelu --clip-pretrained FILE``. With plain ``ViT-B-32`` the weights
load without complaint and the embeddings are quietly worse.

open_clip is imported inside the functions that need it, so that ``nca --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import logging
import os
import socket
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from ncacli.errors import NcaError, UsageError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
FOLDER_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
HF_WEIGHTS_NAME = "open_clip_pytorch_model.bin"  # open_clip's default file in a hub repo
HF_SAFE_WEIGHTS_NAME = "open_clip_model.safetensors"  # tried first
URL_CACHE = "~/.cache/clip"  # where open_clip keeps weights it fetched by URL
PROBE_SECONDS = 3.0


@dataclass
class Clip:
    """A loaded CLIP: the frozen open_clip model (on the CPU), its tokenizer and its input format.

    ``image_size`` is ``(H, W)``; ``mean`` and ``std`` are the per-channel normalisation of its
    inputs. ``copies`` holds the model moved to other devices, made on demand by :meth:`on`.
    """

    model: Any
    tokenizer: Any
    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    name: str
    copies: dict[str, Any] = field(default_factory=dict, repr=False)

    def on(self, device: torch.device | str) -> Any:
        """The model on ``device``; the CPU one is the cached model itself, others are frozen copies."""
        device = torch.device(device)
        if device.type == "cpu":
            return self.model
        key = str(device)
        if key not in self.copies:
            self.copies[key] = copy.deepcopy(self.model).to(device).eval().requires_grad_(False)
        return self.copies[key]

    @torch.no_grad()
    def encode_text(self, text: str) -> torch.Tensor:
        """``text`` → its L2-normalised embedding ``(D,)`` on the CPU."""
        tokens = self.tokenizer([text])
        embedding = self.model.encode_text(tokens).float()[0]
        return embedding / embedding.norm()

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Pictures ``(B, 3, *image_size)`` in [0, 1] → L2-normalised embeddings ``(B, D)``, differentiable."""
        images = images.float()
        mean = torch.tensor(self.mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, 3, 1, 1)
        features = self.on(images.device).encode_image((images - mean) / std).float()
        return features / features.norm(dim=-1, keepdim=True)


_CACHE: dict[tuple[str, str], Clip] = {}


def load_clip(model_name: str = "ViT-B-32", pretrained: str = "openai") -> Clip:
    """Load (once per process) a frozen open_clip model on the CPU with its tokenizer and input format.

    ``model_name``: an open_clip name, ``local-dir:FOLDER``, or a model config JSON file.
    ``pretrained``: a tag of that model, a weights file, or a folder (see the module docstring).
    Raises :class:`UsageError` for names that mean nothing and :class:`NcaError` for weights
    that cannot be had or read; never builds a model with random weights.
    """
    key = (model_name, pretrained)
    if key not in _CACHE:
        _CACHE[key] = _load(model_name, pretrained)
    return _CACHE[key]


def hub_reachable(host: str, port: int = 443, timeout: float = PROBE_SECONDS) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds (name lookup included).

    The lookup cannot be given a timeout of its own, so the probe runs in a daemon thread that is
    abandoned when it takes too long.
    """
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except (OSError, ValueError, UnicodeError):
            result.append(False)

    thread = threading.Thread(target=probe, name=f"probe {host}", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


# ---------------------------------------------------------------------------------------------
# loading


@dataclass
class _Plan:
    """What to hand to open_clip: ``create_model(name, pretrained=weights)`` (``weights`` None for local-dir)."""

    name: str
    weights: str | None
    label: str  # the weights as the user named them, for messages
    tag: dict[str, Any] | None = None  # open_clip's pretrained cfg when ``pretrained`` is a tag
    preprocess: dict[str, Any] | None = None  # from a wrapped model config file


def _load(model_name: str, pretrained: str) -> Clip:
    import open_clip

    plan = _plan(model_name, pretrained)
    offline = False
    if plan.tag is not None:
        offline = _check_tag_weights(plan)
    kwargs: dict[str, Any] = {"require_pretrained": True, "device": "cpu"}
    if plan.tag is not None and plan.tag.get("quick_gelu", False):
        kwargs["force_quick_gelu"] = True  # open_clip 3 only warns when the tag and the model disagree
    if plan.preprocess:
        kwargs["force_preprocess_cfg"] = plan.preprocess
    with _quiet(), _hub_offline(offline):
        try:
            model = open_clip.create_model(plan.name, pretrained=plan.weights, **kwargs)
        except Exception as exc:  # any failure of the library is one line for the user
            raise NcaError(f"cannot load CLIP {plan.name} weights {plan.label}: {_first_line(exc)}") from exc
        try:
            tokenizer = open_clip.get_tokenizer(plan.name)
        except Exception as exc:
            raise NcaError(f"cannot load the tokenizer of CLIP {plan.name}: {_first_line(exc)}") from exc
    model.eval().requires_grad_(False)
    visual = model.visual
    cfg = getattr(visual, "preprocess_cfg", None) or {}
    size = getattr(visual, "image_size", None) or cfg.get("size", 224)  # what the tower was built for
    size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    mean = tuple(float(v) for v in cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(float(v) for v in cfg.get("std", open_clip.OPENAI_DATASET_STD))
    return Clip(model, tokenizer, size, mean, std, plan.name)  # type: ignore[arg-type]


def _plan(model_name: str, pretrained: str) -> _Plan:
    """Work out the open_clip name and weights from the user's two strings, checking what can be checked."""
    import open_clip

    if model_name.startswith("local-dir:"):
        folder = Path(model_name[len("local-dir:") :]).expanduser()
        return _local_dir(folder)
    if model_name.startswith("hf-hub:"):
        raise UsageError(
            f"clip_model {model_name!r}: hf-hub names are not supported; download the repository and "
            "pass --clip-model local-dir:FOLDER (or --clip-pretrained FOLDER)"
        )
    if not model_name:
        raise UsageError("clip_model is empty: name an open_clip model (ViT-B-32) or a model config JSON file")
    preprocess = None
    if model_name.endswith(".json") or Path(model_name).is_file():
        name, preprocess = _register_config(Path(model_name).expanduser())
    else:
        name = model_name
        if name not in open_clip.list_models():
            close = difflib.get_close_matches(name, open_clip.list_models(), n=4, cutoff=0.5)
            hint = f" (close: {', '.join(close)})" if close else ""
            raise UsageError(
                f"unknown CLIP model {name!r}{hint}; "
                "pass an open_clip name, local-dir:FOLDER or a model config JSON file"
            )

    if not pretrained:
        raise UsageError("clip_pretrained is empty: name a tag, a weights file or a folder")
    path = Path(pretrained).expanduser()
    if path.is_dir():
        if (path / "open_clip_config.json").is_file():
            return _local_dir(path)
        weights = _weights_in(path)
        return _Plan(name, str(weights), str(weights), preprocess=preprocess)
    if path.is_file():
        return _Plan(name, str(path), str(path), preprocess=preprocess)
    if open_clip.is_pretrained_cfg(name, pretrained):
        tag = dict(open_clip.get_pretrained_cfg(name, pretrained))
        return _Plan(name, pretrained, pretrained, tag=tag, preprocess=preprocess)
    if path.suffix in WEIGHT_SUFFIXES or os.sep in pretrained or "/" in pretrained:
        raise NcaError(f"CLIP weights {pretrained}: file not found")
    tags = open_clip.list_pretrained_tags_by_model(name)
    known = f"its tags: {', '.join(tags)}" if tags else "it has no tags"
    raise UsageError(
        f"clip_pretrained {pretrained!r} is not a tag of CLIP {name} ({known}), a weights file or a folder"
    )


def _local_dir(folder: Path) -> _Plan:
    config = folder / "open_clip_config.json"
    if not folder.is_dir():
        raise NcaError(f"CLIP folder {folder}: not found")
    if not config.is_file():
        raise NcaError(f"CLIP folder {folder} has no open_clip_config.json; pass its weights with --clip-pretrained")
    # open_clip looks for these three suffixes only, and would otherwise build random weights
    if not any(p.suffix in (".safetensors", ".bin", ".pth") for p in folder.iterdir()):
        raise NcaError(f"CLIP folder {folder} holds open_clip_config.json but no weights (.safetensors, .bin, .pth)")
    return _Plan(f"local-dir:{folder}", None, str(folder))


def _weights_in(folder: Path) -> Path:
    """The one weights file in a folder without ``open_clip_config.json``."""
    for name in FOLDER_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    if not found:
        raise NcaError(f"CLIP folder {folder} holds no weights file ({', '.join(WEIGHT_SUFFIXES)})")
    names = ", ".join(p.name for p in found[:5])
    raise NcaError(f"CLIP folder {folder} holds several weights files ({names}); pass one with --clip-pretrained FILE")


def _register_config(path: Path) -> tuple[str, dict[str, Any] | None]:
    """Register a model config JSON with open_clip under the file's stem → ``(name, preprocess_cfg)``."""
    import open_clip

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"CLIP model config {path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"CLIP model config {path}: not valid JSON ({_first_line(exc)})") from None
    wrapped = isinstance(data, dict) and isinstance(data.get("model_cfg"), dict)
    cfg = data["model_cfg"] if wrapped else data
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise UsageError(f"CLIP model config {path}: missing {', '.join(missing)} (open_clip's model config format)")
    preprocess = data.get("preprocess_cfg") if wrapped else None
    if not wrapped:
        open_clip.add_model_config(path)
    else:
        # open_clip registers only bare configs: hand it an unwrapped copy under the same stem
        with tempfile.TemporaryDirectory() as tmp:
            bare = Path(tmp) / path.name
            bare.write_text(json.dumps(cfg), encoding="utf-8")
            open_clip.add_model_config(bare)
    if path.stem not in open_clip.list_models():
        raise UsageError(f"CLIP model config {path}: open_clip did not register it as {path.stem!r}")
    return path.stem, preprocess if isinstance(preprocess, dict) else None


def _check_tag_weights(plan: _Plan) -> bool:
    """Make sure a tag's weights can be had without a long wait → whether to load in offline mode.

    Returns False when they are not cached but the host answers (open_clip downloads them), True
    when they are cached and the host does not answer; raises :class:`NcaError` when neither.
    """
    import huggingface_hub
    import huggingface_hub.constants as hub_constants

    tag = plan.tag or {}
    what = f"CLIP {plan.name} ({plan.label})"
    if "file" in tag:
        return False
    hub = tag.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub)
        wanted = filename or HF_WEIGHTS_NAME
        cache = hub_constants.HF_HUB_CACHE
        for candidate in [*_safe_alternatives(wanted), wanted]:
            hit = huggingface_hub.try_to_load_from_cache(repo, candidate, cache_dir=cache)
            if isinstance(hit, str) and os.path.isfile(hit):
                return not _host_reachable(hub_constants.ENDPOINT)
        host = urlparse(hub_constants.ENDPOINT).hostname or "huggingface.co"
        if _host_reachable(hub_constants.ENDPOINT):
            return False
        raise NcaError(
            f"{what} needs {wanted} from {host}/{repo}: not in the Hugging Face cache ({cache}) and {host} is "
            f"{_unreachable_words()}; download it where there is network and pass --clip-pretrained FILE "
            "(or a folder holding it)"
        )
    url = tag.get("url", "")
    if url:
        cache = os.path.expanduser(URL_CACHE)
        filename = os.path.basename(urlparse(url).path)
        if os.path.isfile(os.path.join(cache, filename)) or _host_reachable(url):
            return False
        host = urlparse(url).hostname or url
        raise NcaError(
            f"{what} needs {url}: not in open_clip's cache ({cache}) and {host} is unreachable; "
            "download it where there is network and pass --clip-pretrained FILE (or a folder holding it)"
        )
    raise NcaError(f"{what}: open_clip names no file for this tag; pass --clip-pretrained FILE")


def _safe_alternatives(filename: str) -> list[str]:
    """The safetensors file open_clip tries before ``filename`` on the hub."""
    if filename == HF_WEIGHTS_NAME:
        return [HF_SAFE_WEIGHTS_NAME]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors"]
    return []


def _unreachable_words() -> str:
    import huggingface_hub.constants as hub_constants

    return "unreachable (offline mode is on)" if hub_constants.HF_HUB_OFFLINE else "unreachable"


def _host_reachable(url: str) -> bool:
    """Whether the host of ``url`` (or the HTTPS proxy, when one is set) answers; False in hub offline mode."""
    import urllib.request

    import huggingface_hub.constants as hub_constants

    if hub_constants.HF_HUB_OFFLINE:
        return False
    proxy = urllib.request.getproxies().get("https")
    target = urlparse(proxy if proxy else url)
    host = target.hostname
    if not host:
        return False
    try:
        port = target.port or (443 if target.scheme in ("https", "") else 80)
    except ValueError:
        port = 443
    return hub_reachable(host, port)


@contextlib.contextmanager
def _hub_offline(on: bool) -> Iterator[None]:
    """huggingface_hub's offline mode for the duration, so it serves its cache without asking the network."""
    if not on:
        yield
        return
    import huggingface_hub.constants as hub_constants

    before = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = before


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No log records or warnings from open_clip and huggingface_hub while loading."""
    before = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(before)


def _first_line(exc: BaseException) -> str:
    """The first line of an error (with the next one when the first only announces it), at most 300 characters."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    text = lines[0]
    if text.endswith(":") and len(lines) > 1:
        text = f"{text} {lines[1]}"
    return text if len(text) <= 300 else text[:297] + "..."
