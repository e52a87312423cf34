"""What the benchmark needs to know about the machine: names, memory, and how busy the other processes are."""

from __future__ import annotations

import ctypes
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch

PROC = Path("/proc")


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo where there is one."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _status_kb(key: str) -> int | None:
    try:
        match = re.search(rf"^{key}:\s+(\d+) kB", (PROC / "self" / "status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def memory_available() -> int | None:
    """MemAvailable from /proc/meminfo in bytes (None off Linux)."""
    try:
        match = re.search(r"^MemAvailable:\s+(\d+) kB", (PROC / "meminfo").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def available_memory(device: torch.device) -> int | None:
    """Bytes free on ``device``: ``torch.cuda.mem_get_info`` on CUDA, else the system's available memory
    (psutil when installed, else ``/proc/meminfo``); None when it cannot be known."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return memory_available()


def _malloc_trim() -> None:
    """Give the C heap's free pages back to the system (glibc), so the next run's peak is its own."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass


class MemoryProbe:
    """Peak memory of one run: ``start()`` before it, ``stop()`` → ``(peak above baseline, baseline)`` bytes."""

    method = "not measured"
    per_run = False  # True: measure every timed run (cheap); False: the last warm-up run only

    def start(self) -> None:
        pass

    def stop(self) -> tuple[int | None, int | None]:
        return None, None


class CudaMemory(MemoryProbe):
    method = "torch.cuda.max_memory_allocated above the memory allocated before the run (max over timed runs)"
    per_run = True

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.baseline = 0

    def start(self) -> None:
        torch.cuda.synchronize(self.device)
        self.baseline = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)

    def stop(self) -> tuple[int | None, int | None]:
        torch.cuda.synchronize(self.device)
        return torch.cuda.max_memory_allocated(self.device) - self.baseline, self.baseline


class ResidentMemory(MemoryProbe):
    """Linux: reset the high-water mark (``5`` → /proc/self/clear_refs), read VmHWM after the run."""

    method = (
        "peak resident set (VmHWM after clear_refs) above the resident set before the run "
        "(the last warm-up run, after malloc_trim; timed runs reuse that memory)"
    )

    def __init__(self) -> None:
        self.baseline = 0

    @staticmethod
    def available() -> bool:
        try:
            (PROC / "self" / "clear_refs").write_text("5")
        except OSError:
            return False
        return _status_kb("VmHWM") is not None

    def start(self) -> None:
        _malloc_trim()
        (PROC / "self" / "clear_refs").write_text("5")
        self.baseline = (_status_kb("VmRSS") or 0) * 1024

    def stop(self) -> tuple[int | None, int | None]:
        return max(0, (_status_kb("VmHWM") or 0) * 1024 - self.baseline), self.baseline


class LifetimeMemory(MemoryProbe):
    """Fallback: ``getrusage`` ru_maxrss, the peak of the whole process so far (not of one run)."""

    method = "process-lifetime peak resident set (getrusage ru_maxrss; clear_refs unavailable), not per run"

    def stop(self) -> tuple[int | None, int | None]:
        try:
            import resource
        except ImportError:  # Windows
            return None, None
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return (peak if sys.platform == "darwin" else peak * 1024), None


def memory_probe(device: torch.device) -> MemoryProbe:
    if device.type == "cuda":
        return CudaMemory(device)
    if device.type == "cpu":
        return ResidentMemory() if ResidentMemory.available() else LifetimeMemory()
    return MemoryProbe()


def _proc_stat() -> tuple[int, int] | None:
    """``(busy, steal)`` jiffies over all CPUs from /proc/stat."""
    try:
        first = (PROC / "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    values = [int(v) for v in first[1:]] + [0] * 8
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return user + nice + system + irq + softirq, steal


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class LoadSampler:
    """How busy *other* processes keep the cores between construction and :meth:`result`."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.own = _own_cpu_seconds()
        self.stat = _proc_stat()

    def result(self) -> dict[str, Any]:
        """``{cores, steal_cores, own_cores, wall_s, method}``; ``cores`` is None where it cannot be told."""
        wall = max(time.perf_counter() - self.wall, 1e-9)
        own = (_own_cpu_seconds() - self.own) / wall
        stat = _proc_stat()
        if self.stat is not None and stat is not None:
            hz = os.sysconf("SC_CLK_TCK")
            busy = (stat[0] - self.stat[0]) / hz / wall
            steal = (stat[1] - self.stat[1]) / hz / wall
            return {
                "cores": round(max(0.0, busy - own), 3),
                "steal_cores": round(steal, 3),
                "own_cores": round(own, 3),
                "wall_s": round(wall, 3),
                "method": "/proc/stat busy jiffies minus this process's CPU time, over the wall time",
            }
        try:
            load = os.getloadavg()[0]
        except (OSError, AttributeError):
            return {"cores": None, "own_cores": round(own, 3), "wall_s": round(wall, 3), "method": "unavailable"}
        return {
            "cores": round(max(0.0, load - own), 3),
            "own_cores": round(own, 3),
            "wall_s": round(wall, 3),
            "method": "1-minute load average minus this process's CPU use (approximate)",
        }
