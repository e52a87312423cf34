"""Atomic writes, ``-`` for stdin/stdout, and safetensors with metadata (never pickle)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from ncacli.errors import NcaError

MAX_HEADER = 100 * 1024 * 1024


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _public(tmp: str) -> None:
    """mkstemp makes 0600 files; give the final file the mode a plain open() would."""
    os.chmod(tmp, 0o666 & ~_umask())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _public(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temp_path_for(path: Path) -> Path:
    """A hidden temporary path beside ``path`` with the same suffix (for writers that need a name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    _public(tmp)
    return Path(tmp)


def read_input(name: str) -> bytes:
    """The bytes of file ``name``, or of stdin when ``name`` is ``-``."""
    if name == "-":
        data = sys.stdin.buffer.read()
        if not data:
            raise NcaError("stdin: no data (expected a state file from a previous nca command)")
        return data
    path = Path(name)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NcaError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise NcaError(f"{name}: is a directory, not a file") from None
    except OSError as exc:
        raise NcaError(f"{name}: cannot read ({exc.strerror})") from None


def write_output(name: str, data: bytes) -> None:
    """Write ``data`` to file ``name`` atomically, or to stdout when ``name`` is ``-``."""
    if name == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write_bytes(Path(name), data)


def is_safetensors(data: bytes) -> bool:
    return len(data) >= 10 and data[8:9] == b"{"


def pack(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)


def unpack(data: bytes, name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Parse safetensors bytes → ``(tensors, metadata)``; a corrupt file is a one-line error."""
    from safetensors.torch import load

    if len(data) < 8:
        raise NcaError(f"{name}: not a safetensors file (only {len(data)} bytes)")
    size = int.from_bytes(data[:8], "little")
    if size > MAX_HEADER or 8 + size > len(data):
        raise NcaError(f"{name}: not a safetensors file, or truncated (header says {size} bytes)")
    try:
        header = json.loads(data[8 : 8 + size])
        tensors = load(data)
    except Exception as exc:
        raise NcaError(f"{name}: corrupt or truncated safetensors file ({exc})") from None
    metadata = header.get("__metadata__") or {}
    return tensors, metadata
