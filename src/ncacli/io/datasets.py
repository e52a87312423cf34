"""Labelled images for the self-classifying task: scikit-learn's bundled digits, torchvision's MNIST and
CIFAR-10 (downloaded into their cache on a user's machine), or a folder with one sub-folder per class.

Every source gives :class:`LabelledImages`: images ``(N, C, H, W)`` in [0, 1] fitted into ``size`` cells
and padded by ``padding``, labels ``(N,)``, class names, and the train / test split as index tensors. The
digits and a folder are split by a seeded permutation (``test_fraction``); MNIST and CIFAR-10 keep their
own test sets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ncacli.errors import NcaError, UsageError

SOURCES = ("digits", "mnist", "cifar10")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass
class LabelledImages:
    images: torch.Tensor  # (N, C, H, W) float in [0, 1]
    labels: torch.Tensor  # (N,) long
    classes: list[str]
    train: torch.Tensor  # indices of the training split
    test: torch.Tensor  # indices of the test split
    source: str


def default_root() -> Path:
    """Where torchvision data sets are kept: ``$NCA_DATA``, else ``$TORCH_HOME/datasets`` (``~/.cache/torch``)."""
    if os.environ.get("NCA_DATA"):
        return Path(os.environ["NCA_DATA"])
    return Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "datasets"


def fit(images: torch.Tensor, size: int, padding: int) -> torch.Tensor:
    """``(N, C, h, w)`` → ``(N, C, size + 2·padding, …)``: resized (bilinear) so the longer side is ``size``."""
    h, w = images.shape[-2:]
    if max(h, w) != size:
        scale = size / max(h, w)
        shape = (max(1, round(h * scale)), max(1, round(w * scale)))
        images = F.interpolate(images, size=shape, mode="bilinear", align_corners=False, antialias=scale < 1)
    return F.pad(images, (padding,) * 4).clamp(0.0, 1.0)


def split(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    count = max(1, round(n * test_fraction))
    return order[count:].sort().values, order[:count].sort().values


def load_labelled(
    data: str, size: int, padding: int, test_fraction: float = 0.2, split_seed: int = 0, root: str = ""
) -> LabelledImages:
    """The data set ``data``: ``digits``, ``mnist``, ``cifar10``, or a folder (of class sub-folders, or a
    torchvision root holding ``MNIST/raw`` or ``cifar-10-batches-py``)."""
    if data == "digits":
        return _digits(size, padding, test_fraction, split_seed)
    if data in ("mnist", "cifar10"):
        return _torchvision(data, Path(root) if root else default_root(), size, padding)
    path = Path(data)
    if not path.is_dir():
        raise NcaError(f"--data {data}: neither {', '.join(SOURCES)} nor a folder")
    if (path / "MNIST" / "raw").is_dir():
        return _torchvision("mnist", path, size, padding)
    if (path / "cifar-10-batches-py").is_dir():
        return _torchvision("cifar10", path, size, padding)
    return _folder(path, size, padding, test_fraction, split_seed)


def _digits(size: int, padding: int, test_fraction: float, seed: int) -> LabelledImages:
    from sklearn.datasets import load_digits  # the 1,797 8×8 digits ship inside scikit-learn

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().div(16.0)[:, None]  # (1797, 1, 8, 8)
    labels = torch.from_numpy(bunch.target).long()
    train, test = split(len(labels), test_fraction, seed)
    return LabelledImages(fit(images, size, padding), labels, [str(i) for i in range(10)], train, test, "digits")


def _torchvision(name: str, root: Path, size: int, padding: int) -> LabelledImages:
    import torchvision

    cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.CIFAR10
    files = "MNIST/raw/*-ubyte" if name == "mnist" else "cifar-10-batches-py/"
    parts = []
    for train in (True, False):
        try:
            parts.append(cls(str(root), train=train, download=True))
        except Exception as exc:  # offline: torchvision raises URLError / RuntimeError / OSError
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise NcaError(
                f"{name}: not in {root} ({files}) and the download failed ({reason}); put the files there, "
                f"set NCA_DATA or task.data_root, or pass --data DIR"
            ) from None
    images, labels = [], []
    for ds in parts:
        data = torch.as_tensor(ds.data)
        data = data[:, None] if data.ndim == 3 else data.permute(0, 3, 1, 2)  # MNIST (N, 28, 28); CIFAR NHWC
        images.append(data.float().div(255.0))
        labels.append(torch.as_tensor(ds.targets).long())
    n_train = len(labels[0])
    all_labels = torch.cat(labels)
    classes = [str(c).split(" - ")[-1] for c in parts[0].classes]
    train, test = torch.arange(n_train), torch.arange(n_train, len(all_labels))
    return LabelledImages(fit(torch.cat(images), size, padding), all_labels, classes, train, test, name)


def _folder(path: Path, size: int, padding: int, test_fraction: float, seed: int) -> LabelledImages:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    classes = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise NcaError(f"{path}: a labelled folder needs two or more class sub-folders (one per class)")
    images, labels = [], []
    for k, name in enumerate(classes):
        files = sorted(f for f in (path / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise NcaError(f"{path / name}: no images ({', '.join(IMAGE_SUFFIXES)})")
        for f in files:
            try:
                with Image.open(f) as im:
                    rgb = torch.from_numpy(np.asarray(im.convert("RGB"), dtype="float32") / 255.0)
            except (UnidentifiedImageError, OSError) as exc:
                raise NcaError(f"{f}: not a readable image ({exc})") from None
            images.append(rgb.permute(2, 0, 1))
            labels.append(k)
    side = max(max(t.shape[-2:]) for t in images)
    stacked = torch.stack(
        [t if tuple(t.shape[-2:]) == (side, side) else F.interpolate(t[None], size=(side, side), mode="bilinear")[0]
         for t in images]
    )  # fmt: skip
    grey = bool((stacked.amax(1) - stacked.amin(1)).abs().max() < 1e-6)
    if grey:  # black digits on white paper read as ink: the digit's cells are the bright ones
        stacked = stacked[:, :1]
        if stacked.mean() > 0.5:
            stacked = 1.0 - stacked
    train, test = split(len(labels), test_fraction, seed)
    return LabelledImages(fit(stacked, size, padding), torch.tensor(labels), classes, train, test, str(path))


FACES = "faces"
LFW = (
    "scikit-image's lfw_subset.npy (1 MB inside its BSD-3 wheel): the 100 faces of 25×25 grey pixels it keeps from "
    "Labeled Faces in the Wild (Huang et al.), which states no licence of its own (research use)"
)


@dataclass
class Pictures:
    images: torch.Tensor  # (N, 4, S, S) premultiplied RGBA in [0, 1], opaque
    names: list[str]
    train: torch.Tensor
    test: torch.Tensor
    source: str


def load_pictures(data: str, size: int, count: int, test_fraction: float, seed: int, root: str = "") -> Pictures:
    """An unlabelled set of pictures, each a ``size`` square (centre-cropped, resized): ``faces`` (offline, see
    :data:`LFW`), ``celeba`` (torchvision's CelebA in ``root`` or :func:`default_root`), or a folder of images;
    ``count`` > 0 keeps the first ``count``."""
    if data == FACES:
        from skimage.data import lfw_subset

        grey = torch.from_numpy(lfw_subset()[:100]).float()
        grey = grey / 255.0 if grey.max() > 1 else grey
        images, names, source = grey[:, None].expand(-1, 3, -1, -1), [f"face-{i}" for i in range(100)], LFW
    elif data == "celeba":
        images, names, source = _celeba(Path(root) if root else default_root(), count)
    else:
        path = Path(data).expanduser()
        if not path.is_dir():
            raise NcaError(f"--data {data}: neither {FACES}, celeba nor a folder of pictures")
        images, names = _pictures_in(path, size, count)
        source = f"the pictures of {path}"
    if count > 0:
        images, names = images[:count], names[:count]
    if len(names) < 2:
        raise NcaError(f"--data {data}: {len(names)} picture; a training and a held-out split need two or more")
    images = _square(images, size)
    opaque = torch.cat([images, torch.ones_like(images[:, :1])], dim=1)
    train, test = split(len(names), test_fraction, seed)
    return Pictures(opaque.contiguous(), names, train, test, source)


def picture_file(path: str, size: int, what: str = "picture") -> torch.Tensor:
    """One picture file of ``size × size`` pixels as an opaque ``(4, size, size)``; a picture of another size is
    refused (``what`` names it in the message), not cropped or resized behind the user's back."""
    from PIL import Image, UnidentifiedImageError

    file = Path(path).expanduser()
    if not file.is_file():
        raise NcaError(f"{path}: no such picture")
    try:
        with Image.open(file) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise NcaError(f"{file}: not a readable image ({exc})") from None
    if (h, w) != (size, size):
        raise UsageError(
            f"{path}: {w}×{h} pixels, where this model's autoencoder takes {size}×{size} (the size it was trained "
            f"at); make the {what} {size}×{size} first"
        )
    images, _ = _pictures_in(file.parent, size, 0, only=file.name)
    return torch.cat([images[0], torch.ones_like(images[0, :1])])


def _square(images: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, 3, h, w)`` → the centred square, resized to ``size`` (bilinear, antialiased when shrinking)."""
    h, w = images.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    images = images[:, :, top : top + side, left : left + side]
    if side != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size)
    return images.clamp(0.0, 1.0)


def _pictures_in(path: Path, size: int, count: int, only: str = "") -> tuple[torch.Tensor, list[str]]:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and (not only or f.name == only))
    if not files:
        raise NcaError(f"{path}: no pictures ({', '.join(IMAGE_SUFFIXES)})")
    out = []
    for f in files[: count if count > 0 else None]:
        try:
            with Image.open(f) as im:
                rgb = torch.from_numpy(np.asarray(im.convert("RGB"), dtype="float32") / 255.0).permute(2, 0, 1)
        except (UnidentifiedImageError, OSError) as exc:
            raise NcaError(f"{f}: not a readable image ({exc})") from None
        out.append(_square(rgb[None], size)[0])
    return torch.stack(out), [f.name for f in files[: len(out)]]


def _celeba(root: Path, count: int) -> tuple[torch.Tensor, list[str]]:
    import numpy as np
    import torchvision

    try:
        ds = torchvision.datasets.CelebA(str(root), split="all", target_type=[], download=False)
    except Exception:  # the files are not there (torchvision downloads CelebA from Google Drive, if at all)
        raise NcaError(
            f"celeba: not in {root / 'celeba'} (img_align_celeba/ and list_eval_partition.txt); put the files there, "
            "set NCA_DATA or task.data_root, or pass --data DIR (a folder of pictures)"
        ) from None
    n = len(ds) if count <= 0 else min(count, len(ds))
    images = [torch.from_numpy(np.asarray(ds[i][0], dtype="float32") / 255.0).permute(2, 0, 1) for i in range(n)]
    return torch.stack(images), [ds.filename[i] for i in range(n)]
