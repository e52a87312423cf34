"""GIF and MP4 writers (imageio; MP4 through imageio-ffmpeg's bundled ffmpeg)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ncacli.errors import NcaError
from ncacli.io.files import temp_path_for

FORMATS = (".gif", ".mp4")


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """Write ``frames`` (uint8 ``(H, W, 3)``) to ``path`` (``.gif`` or ``.mp4``) atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise NcaError(f"{path}: unsupported video format {suffix!r}; use .gif or .mp4")
    tmp = temp_path_for(path)
    try:
        if suffix == ".gif":
            import imageio.v3 as iio

            iio.imwrite(tmp, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
        else:
            import imageio.v2 as imageio

            h, w = frames[0].shape[:2]
            if h % 2 or w % 2:  # yuv420p needs even sizes
                frames = [np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") for f in frames]
            with imageio.get_writer(
                tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=1
            ) as writer:
                for frame in frames:
                    writer.append_data(frame)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_brightness_frames(path: str, grid: tuple[int, int], limit: int | None = None):
    """The frames of a video (MP4, GIF, ...), the first ``limit`` of them, as brightness on the grid →
    ``(T, H, W)`` in [0, 1]."""
    import imageio.v2 as imageio
    import torch
    from PIL import Image

    from ncacli.io.images import brightness

    p = Path(path)
    if not p.is_file():
        raise NcaError(f"{path}: video not found")
    frames = []
    try:
        with imageio.get_reader(p) as reader:
            for frame in reader:
                pixels = np.asarray(frame)
                frames.append(brightness(Image.fromarray(pixels if pixels.ndim == 2 else pixels[..., :4]), grid))
                if limit is not None and len(frames) >= limit:
                    break
    except NcaError:
        raise
    except Exception as exc:  # imageio raises many kinds for a foreign or truncated file
        if not frames:
            raise NcaError(
                f"{path}: not a video imageio can read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
            ) from None
    if not frames:
        raise NcaError(f"{path}: the video has no frames")
    return torch.stack(frames)
