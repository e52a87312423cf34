"""Video sequences for the video-transition task (the NCAtorch review §3.4): moving digits generated here,
torchvision's MovingMNIST (downloaded into its cache on a user's machine), or a folder of ``.npy`` arrays.

Every source gives :class:`Videos`: grey frames ``(N, T, H, W)`` uint8 fitted so the longer side is ``size``
cells, and the train / test split as index tensors (a seeded permutation, ``test_fraction`` held out).

``moving-digits`` is a MovingMNIST generator of the standard kind (Srivastava et al. 2015, "Unsupervised
learning of video representations using LSTMs": two 28×28 digits on 64×64 frames): each digit starts at a
random place and moves in a random direction by 0.1 of the free span per frame, bouncing off the walls; the
digits are combined by their maximum. Its digits are scikit-learn's bundled 8×8 digits scaled up to
``digit_size`` (or MNIST's, from torchvision's cache); the held-out sequences are drawn from held-out digit
images and a random stream of their own, so a test sequence shares nothing with training but the rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ncacli.errors import NcaError

SOURCES = ("moving-digits", "moving-mnist")
DIGIT_SOURCES = ("digits", "mnist")
STEP_LENGTH = 0.1  # a digit moves this share of the free span (frame − digit) per frame, as in Srivastava et al.
MOVING_MNIST = "MovingMNIST/mnist_test_seq.npy"  # torchvision's file: (T = 20, N = 10000, 64, 64) uint8


@dataclass
class Videos:
    videos: torch.Tensor  # (N, T, H, W) uint8
    train: torch.Tensor  # indices of the training sequences
    test: torch.Tensor  # indices of the held-out sequences
    source: str

    @property
    def length(self) -> int:
        """Frames per sequence, ``T``."""
        return int(self.videos.shape[1])

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.videos.shape[2]), int(self.videos.shape[3])

    def window(self, video: torch.Tensor, start: torch.Tensor, count: int) -> torch.Tensor:
        """Frames ``start … start + count − 1`` of sequences ``video`` (both ``(B,)``) → ``(B, count, H, W)`` float
        in [0, 1]."""
        frames = start.view(-1, 1) + torch.arange(count, device=start.device)
        return self.videos[video.view(-1, 1), frames].float().div(255.0)


def load_videos(
    data: str,
    size: int,
    test_fraction: float = 0.1,
    split_seed: int = 0,
    root: str = "",
    videos: int = 1000,
    length: int = 30,
    digits: int = 2,
    digit_size: int = 0,
    digit_source: str = "digits",
) -> Videos:
    """The sequences ``data``: ``moving-digits`` (``videos`` sequences of ``length`` frames of ``digits`` digits
    of ``digit_size`` cells, 0: 7/16 of the frame), ``moving-mnist``, or a folder (of ``.npy`` arrays, or a
    torchvision root holding ``MovingMNIST/``)."""
    from ncacli.io.datasets import default_root, split

    base = Path(root) if root else default_root()
    if data == "moving-digits":
        side = digit_size or round(size * 7 / 16)
        return moving_digits(videos, length, size, side, digits, test_fraction, split_seed, digit_source, base)
    if data == "moving-mnist":
        frames = _moving_mnist(base)
        source = "moving-mnist"
    else:
        path = Path(data)
        if not path.is_dir():
            raise NcaError(f"--data {data}: neither {', '.join(SOURCES)} nor a folder of .npy videos")
        if (path / MOVING_MNIST).is_file():
            frames, source = _moving_mnist(path), "moving-mnist"
        else:
            frames, source = _folder(path), str(path)
    train, test = split(len(frames), test_fraction, split_seed)
    return Videos(_fit(frames, size), train, test, source)


# -- moving digits ---------------------------------------------------------------------------------------------


def bouncing_paths(start: np.ndarray, theta: np.ndarray, length: int, limit: float) -> np.ndarray:
    """Top-left corners ``(n, digits, length, 2)`` (row, column) in ``[0, limit]``: from ``start``
    ``(n, digits, 2)`` in direction ``theta`` ``(n, digits)``, ``STEP_LENGTH · limit`` per frame, reflected at
    the walls."""
    pos = start.astype(np.float64)
    velocity = STEP_LENGTH * limit * np.stack([np.sin(theta), np.cos(theta)], axis=-1)
    out = np.empty((*pos.shape[:2], length, 2))
    for t in range(length):
        out[:, :, t] = pos
        pos = pos + velocity
        low, high = pos < 0.0, pos > limit
        pos = np.where(low, -pos, np.where(high, 2.0 * limit - pos, pos))
        velocity = np.where(low | high, -velocity, velocity)
    return out


def render_sequences(images: np.ndarray, paths: np.ndarray, pick: np.ndarray, size: int) -> np.ndarray:
    """Digits ``images[pick]`` ``(M, d, d)`` in [0, 1] at ``paths`` ``(n, digits, T, 2)`` on ``size``² black
    frames, combined by their maximum → ``(n, T, size, size)`` uint8."""
    n, digits, length, _ = paths.shape
    d = images.shape[-1]
    corners = np.rint(paths).astype(np.int64)
    ink = (images * 255.0 + 0.5).astype(np.uint8)  # rounding commutes with the maximum
    out = np.zeros((n, length, size, size), dtype=np.uint8)
    seq, frame = np.arange(n)[:, None, None, None], np.arange(length)[None, :, None, None]
    cells = np.arange(d)
    for j in range(digits):  # one patch per (sequence, frame) for each digit: no index repeats within a write
        rows = (corners[:, j, :, 0, None] + cells)[..., None]  # (n, T, d, 1)
        cols = (corners[:, j, :, 1, None] + cells)[..., None, :]  # (n, T, 1, d)
        out[seq, frame, rows, cols] = np.maximum(out[seq, frame, rows, cols], ink[pick[:, j]][:, None])
    return out


def digit_images(source: str, side: int, test_fraction: float, seed: int, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The digits sequences are made of, ``side``² cells in [0, 1]: ``(train images, held-out images)``."""
    from ncacli.io.datasets import load_labelled

    if source not in DIGIT_SOURCES:
        raise NcaError(f"task.digit_source must be one of {', '.join(DIGIT_SOURCES)}, not {source!r}")
    data = load_labelled(source, side, 0, test_fraction, seed, str(root))
    images = data.images[:, 0].numpy().astype(np.float32)
    return images[data.train.numpy()], images[data.test.numpy()]


def moving_digits(
    videos: int,
    length: int,
    size: int,
    digit_size: int,
    digits: int = 2,
    test_fraction: float = 0.1,
    seed: int = 0,
    digit_source: str = "digits",
    root: Path | None = None,
) -> Videos:
    """``videos`` sequences ``(videos, length, size, size)``; the last ``round(videos · test_fraction)`` (at least
    one) are the held-out ones, made of held-out digit images. The same ``seed`` makes the same sequences."""
    from ncacli.io.datasets import default_root

    if not 0 < digit_size < size:
        raise NcaError(f"moving-digits: a digit of {digit_size} cells does not move on frames of {size} cells")
    train_digits, test_digits = digit_images(digit_source, digit_size, test_fraction, seed, root or default_root())
    n_test = max(1, round(videos * test_fraction))
    limit = float(size - digit_size)
    parts = []
    for stream, (count, images) in enumerate(((videos - n_test, train_digits), (n_test, test_digits))):
        # sequence i of a split draws from a stream of its own: the same sequence whatever the count
        draws = [np.random.default_rng([seed, stream, i]) for i in range(count)]
        start = np.array([r.uniform(0.0, limit, (digits, 2)) for r in draws]).reshape(count, digits, 2)
        theta = np.array([r.uniform(0.0, 2.0 * math.pi, digits) for r in draws]).reshape(count, digits)
        pick = np.array([r.integers(0, len(images), digits) for r in draws]).reshape(count, digits)
        parts.append(render_sequences(images, bouncing_paths(start, theta, length, limit), pick, size))
    frames = torch.from_numpy(np.concatenate(parts))
    index = torch.arange(videos)
    source = f"moving-digits ({digits} × {digit_source} {digit_size}², seed {seed})"
    return Videos(frames, index[: videos - n_test], index[videos - n_test :], source)


# -- files -----------------------------------------------------------------------------------------------------


def _moving_mnist(root: Path) -> torch.Tensor:
    """torchvision's MovingMNIST under ``root`` (downloaded there when it can be) → ``(N, T, 64, 64)`` uint8."""
    import torchvision

    try:
        data = torchvision.datasets.MovingMNIST(str(root), download=True).data  # (N, T, 1, 64, 64)
    except Exception as exc:  # offline: torchvision raises URLError / RuntimeError / OSError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NcaError(
            f"moving-mnist: not in {root} ({MOVING_MNIST}) and the download failed ({reason}); put the file there, "
            "set NCA_DATA or task.data_root, or pass --data DIR"
        ) from None
    return data[:, :, 0]


def _folder(path: Path) -> torch.Tensor:
    """Every ``*.npy`` of ``path``, each ``(N, T, H, W)`` uint8 sequences of the same ``T, H, W`` → one tensor."""
    files = sorted(f for f in path.iterdir() if f.suffix.lower() == ".npy" and f.is_file())
    if not files:
        raise NcaError(f"{path}: no .npy files (arrays of videos, (N, T, H, W) uint8)")
    parts, shape = [], None
    for f in files:
        try:
            array = np.load(f, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise NcaError(f"{f}: not a readable .npy array ({str(exc).splitlines()[0]})") from None
        if f.name == Path(MOVING_MNIST).name and array.ndim == 4:
            array = array.transpose(1, 0, 2, 3)  # torchvision's file keeps time first
        if array.ndim != 4 or array.dtype != np.uint8 or min(array.shape) < 1 or min(array.shape[2:]) < 3:
            raise NcaError(
                f"{f}: expected videos as an (N, T, H, W) uint8 array, not {array.dtype} {list(array.shape)}"
            )
        if shape is not None and array.shape[1:] != shape:
            raise NcaError(
                f"{f}: sequences of {list(array.shape[1:])} (T, H, W), but {files[0].name} has {list(shape)}; "
                "every file of the folder needs the same"
            )
        shape = array.shape[1:]
        parts.append(torch.from_numpy(np.array(array)))  # read from the file (a memory map) into memory
    return torch.cat(parts)


def _fit(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, T, h, w)`` uint8 → resized (bilinear) so the longer side is ``size``, uint8; in chunks."""
    from ncacli.io.datasets import fit

    n, t, h, w = frames.shape
    if max(h, w) == size:
        return frames.contiguous()
    out = []
    for chunk in frames.split(256):
        x = fit(chunk.reshape(-1, 1, h, w).float().div(255.0), size, 0)
        out.append((x * 255.0 + 0.5).to(torch.uint8).reshape(len(chunk), t, *x.shape[-2:]))
    return torch.cat(out)
