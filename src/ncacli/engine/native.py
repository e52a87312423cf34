"""Learned depthwise kernels at the active cells by a small C kernel (``taps.c``), built on first use.

The active step's learned depthwise convolutions (``conv``, ``conv_scaled`` and a ``combined`` of them) gather each
active cell's neighbours and multiply them by the kernels. As one matrix product that takes ``C`` times the kernels'
multiply-adds (a block-diagonal matrix); as products batched over channels it runs far below the CPU's speed
(``benchmarks/NOTES.md``, items 8, 10 and 13). ``taps.c`` gathers and multiplies in one pass, with only the
kernels' own multiply-adds, and adds the gradient back into the neighbours' rows without the gathered copy.

It is compiled once per machine by the system's C compiler (``$CC``, else ``cc``) into
``$XDG_CACHE_HOME/nca/native`` (``~/.cache/nca/native``), keyed by the source, the CPU's architecture and vector
instructions, and loaded with :mod:`ctypes`. Without a compiler, on other devices or types, or with
``NCA_NATIVE=0``, the active step keeps the matrix product: the same numbers up to the order of floating-point
sums.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

DISABLE_ENV = "NCA_NATIVE"
SOURCE = Path(__file__).with_name("taps.c")

_P, _I64, _I = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int

# Vector instructions per torch's reading of the CPU: the kernel is built for what this CPU runs.
_FLAGS = {"AVX512": ["-mavx512f", "-mavx2", "-mfma"], "AVX2": ["-mavx2", "-mfma"]}


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nca" / "native"


def _build(target: Path, flags: list[str]) -> bool:
    """Compile ``taps.c`` into ``target`` (written whole, then renamed into place); with OpenMP where the
    compiler has it, else single-threaded."""
    compiler = shlex.split(os.environ.get("CC", "")) or [shutil.which("cc") or shutil.which("gcc") or ""]
    if not compiler[0]:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    for openmp in (["-fopenmp"], []):
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        cmd = [*compiler, "-O3", "-shared", "-fPIC", *flags, *openmp, str(SOURCE), "-o", tmp]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0
        except (OSError, subprocess.SubprocessError):
            done = False
        if done:
            os.replace(tmp, target)
            return True
        Path(tmp).unlink(missing_ok=True)
    return False


@cache
def library() -> ctypes.CDLL | None:
    """The compiled kernel, or None where it cannot be had (no compiler, ``NCA_NATIVE=0``, a failed build)."""
    if os.environ.get(DISABLE_ENV, "1") == "0" or not SOURCE.is_file():
        return None
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()  # unknown: no flags
    flags = _FLAGS.get(capability, [])
    built_for = " ".join([platform.machine(), *flags]).encode()  # a home shared between machines keeps one each
    key = hashlib.sha256(SOURCE.read_bytes() + built_for).hexdigest()[:16]
    target = cache_dir() / f"taps-{key}.so"
    try:
        if not target.is_file() and not _build(target, flags):
            return None
        lib = ctypes.CDLL(str(target))
    except OSError:
        return None
    lib.taps_forward.argtypes = [_P, _P, _P, _P, _I64, _I, _I, _I, _I]
    lib.taps_forward.restype = None
    lib.taps_backward.argtypes = [_P, _P, _P, _P, _P, _P, _P, _I, _I, _I, _I, _I64, _I]
    lib.taps_backward.restype = _I
    lib.taps_limit.restype = _I
    return lib


def usable(rows: torch.Tensor, kernels: torch.Tensor) -> bool:
    """Whether :func:`depthwise_features` runs for these tensors: float32 on the CPU, within the kernel's limit
    on ``K · C``, and the library built."""
    if rows.device.type != "cpu" or rows.dtype != torch.float32 or kernels.dtype != torch.float32:
        return False
    lib = library()
    return lib is not None and kernels.shape[1] * kernels.shape[2] <= lib.taps_limit()


def depthwise_features(
    rows: torch.Tensor, flat: torch.Tensor, kernels: torch.Tensor, bounds: torch.Tensor, skip: int
) -> torch.Tensor:
    """``rows`` ``(R, C)``, ``flat`` ``(N, T)`` (each cell's neighbour at each tap, a row of ``rows``), ``kernels``
    ``(T, K, C)`` → ``(N, C·K)``, grouped per channel: ``out[n, c·K + k] = Σ_t kernels[t, k, c] ·
    rows[flat[n, t], c]``. ``bounds`` ``(P + 1,)``: the cells split into parts whose neighbours' rows are disjoint
    (one per sample); ``skip``: a row whose gradient is not needed (the zero row beyond the edge), or -1.
    Differentiable in ``rows`` and ``kernels``."""
    return _DepthwiseTaps.apply(rows, flat, kernels, bounds, skip)


class _DepthwiseTaps(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows, flat, kernels, bounds, skip):
        rows, flat, kernels = rows.contiguous(), flat.contiguous(), kernels.contiguous()
        n, t = flat.shape
        _, k, c = kernels.shape
        out = rows.new_empty(n, c * k)
        pointers = (rows.data_ptr(), flat.data_ptr(), kernels.data_ptr(), out.data_ptr())
        library().taps_forward(*pointers, n, t, c, k, torch.get_num_threads())
        ctx.save_for_backward(rows, flat, kernels, bounds)
        ctx.skip = skip
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        rows, flat, kernels, bounds = ctx.saved_tensors
        grad = grad.contiguous()
        t, k, c = kernels.shape
        need_rows, _, need_kernels = ctx.needs_input_grad[:3]
        grad_rows = torch.zeros_like(rows) if need_rows else None
        grad_kernels = torch.zeros_like(kernels) if need_kernels else None
        if grad_rows is not None or grad_kernels is not None:
            failed = library().taps_backward(
                rows.data_ptr(),
                flat.data_ptr(),
                kernels.data_ptr(),
                grad.data_ptr(),
                grad_rows.data_ptr() if grad_rows is not None else None,
                grad_kernels.data_ptr() if grad_kernels is not None else None,
                bounds.data_ptr(),
                bounds.numel() - 1,
                t,
                c,
                k,
                ctx.skip,
                torch.get_num_threads(),
            )
            if failed:
                raise MemoryError("the learned kernels' gradient: out of memory")
        return grad_rows, None, grad_kernels, None, None
