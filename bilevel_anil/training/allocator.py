"""Keep freed tensor memory inside the process instead of handing it back to the kernel.

glibc's ``malloc`` serves every block above its mmap threshold (128 KiB at first, growing to at
most 32 MiB) with a fresh ``mmap`` and returns it to the kernel on ``free``, and trims the heap
top above 128 KiB. A meta-training step frees and re-allocates the same large activation
buffers every step, so each step faults all of them in again: measured on this project's
20-way ANIL preset, 27.7 of 65 CPU-seconds were spent in the kernel (docs/results/speed.md). Raising
the thresholds with ``mallopt`` keeps those buffers in the heap for reuse.

``keep_freed_memory`` is called by the command line (``run.py``) and by the Python API's
entry points; it is a no-op where it does not apply (not Linux/glibc, ``BILEVEL_ANIL_MALLOC=system``,
or the user's own ``MALLOC_*`` variables). The cost is resident memory: the process keeps its
peak heap instead of shrinking between steps (measured in docs/results/speed.md).

Example:
    >>> import os
    >>> from bilevel_anil.training.allocator import keep_freed_memory
    >>> keep_freed_memory() == (os.environ.get("BILEVEL_ANIL_MALLOC") != "system")  # Linux, glibc
    True
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2 ** 31 - 1

SWITCH = "BILEVEL_ANIL_MALLOC"  # "system": leave glibc's defaults (e.g. to measure peak memory)
_USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                   "GLIBC_TUNABLES", "LD_PRELOAD")
SETTINGS = {  # what the command line and the API set, and what docs/results/speed.md measured
    "mmap_threshold": _INT_MAX,   # blocks up to 2 GiB come from the heap (mallopt takes an int)
    "trim_threshold": _INT_MAX,   # never give the heap's top back below 2 GiB free
    "top_pad": 1 << 30,           # grow the heap 1 GiB at a time
}
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process, so freed tensor buffers are
    kept for the next step instead of being returned to the kernel and faulted in again.

    ``run.py`` calls it at start-up; call it yourself at the top of a script of the Python
    API. Safe to call any number of times.

    Returns:
        True when the settings are in force; False (and nothing changed) off Linux/glibc, when
        ``BILEVEL_ANIL_MALLOC=system``, or when the process was started with its own allocator
        settings (``MALLOC_*_`` variables, ``GLIBC_TUNABLES`` or an ``LD_PRELOAD`` allocator
        such as jemalloc), which are respected.

    Raises:
        ValueError: When ``BILEVEL_ANIL_MALLOC`` is set to something other than ``keep`` or
            ``system``.

    Examples:
        >>> from bilevel_anil import keep_freed_memory
        >>> keep_freed_memory() in (True, False)
        True
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    switch = os.environ.get(SWITCH, "")
    if switch not in ("", "keep", "system"):
        from ..errors import UsageError
        raise UsageError(f"{SWITCH}={switch!r} is not understood: use 'keep' (the default) or 'system'")
    if not sys.platform.startswith("linux") or switch == "system":
        return False
    if any(os.environ.get(name) for name in _USER_VARIABLES):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, SETTINGS["mmap_threshold"]),
        (_M_TRIM_THRESHOLD, SETTINGS["trim_threshold"]),
        (_M_TOP_PAD, SETTINGS["top_pad"])))
    return _applied
