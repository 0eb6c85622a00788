"""Wall time and peak memory of one call, on CPU or CUDA (for the comparison tool and benchmarks)."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass
class Measurement:
    seconds: float
    peak_bytes: Optional[int]  # above the memory in use before the call; None where unmeasurable
    value: Any = None

    @property
    def peak_mib(self) -> Optional[float]:
        return None if self.peak_bytes is None else self.peak_bytes / 2 ** 20


def _status_bytes(key: str) -> Optional[int]:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM)."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


MMAP_ENV = "MALLOC_MMAP_THRESHOLD_"


def reexec_with_returnable_memory() -> None:
    """Linux/glibc: restart this process with allocations of 64 KiB and up served by mmap
    (returned to the system on free), so the resident set size follows the live tensors and
    ``measure``'s peak is meaningful. Without it, freed memory stays resident and later
    measurements read near zero. Does nothing where the variable is already set."""
    if sys.platform.startswith("linux") and MMAP_ENV not in os.environ:
        os.environ[MMAP_ENV] = "65536"
        os.execv(sys.executable, [sys.executable] + sys.argv)


def measure(fn: Callable[[], Any], device: str = "cpu") -> Measurement:
    """Run ``fn`` once; its wall time and peak memory above the level before the call.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the process's peak resident set size
    (Linux ``VmHWM``, reset before the call) above its size before the call; meaningful when
    freed tensors leave the resident set (see ``reexec_with_returnable_memory``).
    """
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        value = fn()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        return Measurement(seconds, torch.cuda.max_memory_allocated() - base, value)
    ok = _reset_peak_rss()
    base = _status_bytes("VmRSS:")
    t0 = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - t0
    peak = _status_bytes("VmHWM:") if ok else None
    return Measurement(seconds, None if peak is None or base is None else max(peak - base, 0), value)
