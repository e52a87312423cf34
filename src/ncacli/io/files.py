"""Atomic writes, ``-`` for stdin/stdout, and safetensors with metadata (never pickle)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from ncacli.errors import NcaError, WriteError

MAX_HEADER = 100 * 1024 * 1024


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _public(tmp: str) -> None:
    """mkstemp makes 0600 files; give the final file the mode a plain open() would."""
    os.chmod(tmp, 0o666 & ~_umask())


def write_error(path: Path | str, exc: OSError) -> WriteError:
    """An OSError while writing ``path`` as one line: ``path: no space left on device``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return WriteError(f"{path}: {reason[:1].lower()}{reason[1:]}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # a full disk can show only now, when the data leaves the page cache
    finally:
        os.close(fd)


@contextmanager
def atomic_output(path: Path | str) -> Iterator[Path]:
    """A hidden temporary file beside ``path``, with its suffix, for a writer to fill.

    When the block ends without error the file is flushed to disk and renamed onto ``path``. Any error
    (a full disk, Ctrl-C, a writer's own failure) removes the temporary file and leaves ``path`` as it
    was; an ``OSError`` is re-raised as one :class:`WriteError` line naming ``path``.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix or ".tmp")
        os.close(fd)
        tmp = Path(name)
        yield tmp
        _fsync(tmp)
        _public(tmp)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (see :func:`atomic_output`)."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def append_line(path: Path | str, line: str) -> None:
    """Append one line to a log (``metrics.jsonl``), so it can be followed while it grows.

    A failed append is cut back to where the line began: the file keeps whole lines only, all those it
    had, and the error is one :class:`WriteError` line naming ``path``.
    """
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException as exc:
            os.ftruncate(fd, start)
            if isinstance(exc, OSError):
                raise write_error(path, exc) from None
            raise
    finally:
        os.close(fd)


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
