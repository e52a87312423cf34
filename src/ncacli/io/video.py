"""GIF and MP4 writers (GIF through Pillow, MP4 through imageio-ffmpeg's bundled ffmpeg), and reading the
frames of a control video."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import numpy as np

from ncacli.errors import NcaError, WriteError
from ncacli.io.files import atomic_output

FORMATS = (".gif", ".mp4")


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """Write ``frames`` (uint8 ``(H, W, 3)``) to ``path`` (``.gif`` or ``.mp4``) atomically: the video is
    renamed into place only once its writer has finished without error (ffmpeg's exit status and its
    messages checked), else ``path`` is left as it was and the error is one line naming it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise NcaError(f"{path}: unsupported video format {suffix!r}; use .gif or .mp4")
    with atomic_output(path) as tmp:
        if suffix == ".gif":
            from PIL import Image

            first, *rest = (Image.fromarray(np.ascontiguousarray(f, dtype=np.uint8)) for f in frames)
            with open(tmp, "wb") as f:
                first.save(f, format="GIF", save_all=True, append_images=rest, duration=1000.0 / fps, loop=0)
        else:
            _write_mp4(tmp, path, frames, fps)


def _write_mp4(tmp: Path, path: Path, frames: list[np.ndarray], fps: float) -> None:
    """H.264 in MP4 (yuv420p, which needs even sides: odd ones are padded by their edge) by piping raw
    RGB frames into ffmpeg; its stderr is read beside, so a full disk at the trailer is seen."""
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    if h % 2 or w % 2:
        frames = [np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") for f in frames]
        h, w = h + h % 2, w + w % 2
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-v", "error"]
    command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-"]
    command += ["-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", str(tmp)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    messages: list[bytes] = []
    reader = threading.Thread(target=lambda: messages.append(process.stderr.read()), daemon=True)
    reader.start()
    try:
        for frame in frames:
            process.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
    except BrokenPipeError:  # ffmpeg stopped early: its messages say why
        pass
    except BaseException:
        process.kill()
        raise
    finally:
        try:
            process.stdin.close()
        except BrokenPipeError:
            pass
        code = process.wait()
        reader.join()
    text = b"".join(messages).decode("utf-8", "replace").strip()
    if code != 0 or text:
        raise WriteError(f"{path}: {_ffmpeg_reason(text, code)}")


def _ffmpeg_reason(text: str, code: int) -> str:
    """ffmpeg's messages → the cause in a few words: the OS error when one is named, else its last line."""
    for reason in ("No space left on device", "Disk quota exceeded", "Permission denied", "File too large"):
        if reason in text:
            return reason[:1].lower() + reason[1:]
    if code == -signal.SIGXFSZ:  # past the process's file-size limit
        return "file too large"
    if code < 0:
        return f"ffmpeg was stopped by {signal.Signals(-code).name}"
    last = text.splitlines()[-1] if text else f"exit status {code}"
    return f"ffmpeg failed ({last})"


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
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not frames:
            raise NcaError(f"{path}: not a video imageio can read ({reason})") from None
        raise NcaError(
            f"{path}: the video ends early, after {len(frames)} frame{'s' if len(frames) != 1 else ''} "
            f"({reason}): a truncated or damaged file"
        ) from None
    if not frames:
        raise NcaError(f"{path}: the video has no frames")
    return torch.stack(frames)
