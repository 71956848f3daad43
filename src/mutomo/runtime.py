"""Process-level tuning for CPU runs: keep freed memory for reuse instead of unmapping it.

glibc's malloc serves blocks above a threshold (at most 32 MiB) with ``mmap`` and unmaps them when
they are freed, so a loop of steps that allocates and frees tensors of megabytes page-faults all
of that memory in again on every step. Page faults are expensive in virtual machines: on the
project's 2-core machine, 16 detector designs in one pass (benchmarks/design_batch.py) took
0.47-0.54 s per step with the default allocator and 0.36 s with :func:`tune_allocator`.
It turns ``mmap`` off for malloc (``M_MMAP_MAX = 0``) and raises the trim threshold to 2 GiB, so
freed blocks stay in the heap and are reused; peak memory is unchanged within 1 %, and no result
changes. ``mutomo optimise`` and ``mutomo evaluate`` call it, and so do the benchmarks (which
give TomOpt's processes the same settings through glibc's environment variables). It does
nothing on a C library other than glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameter numbers (glibc malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# Keep up to 2 GiB (the largest value mallopt takes) of freed memory at the top of the heap.
TRIM_THRESHOLD_BYTES = 2**31 - 1
# The same settings for a child process, through glibc's environment variables.
ALLOCATOR_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD_BYTES)}


def tune_allocator() -> bool:
    """Keep freed memory for reuse (see the module docstring). Returns True if glibc took it."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


# Compiled propagation kernels (mutomo.volume.propagation): None follows MUTOMO_COMPILE.
_compiled_kernels: bool | None = None


def set_compiled_kernels(enabled: bool | None) -> None:
    """Switch the compiled (fused) propagation kernels on or off for this process; ``None`` goes
    back to the environment variable ``MUTOMO_COMPILE`` (``1``: on).

    Off by default: the plain kernels give the reference results, bit for bit; the compiled ones
    agree at float rounding. On the CPU they are compiled ahead of time, in another process, and
    cached on disk (:mod:`mutomo.volume.aot`: about a minute once per machine, torch version and
    kernel source; a C++ compiler is needed); on a GPU by ``torch.compile`` on first use in each
    process. They fall back to the plain kernels, with a warning, when compiling fails
    (benchmarks/README.md, "Issue 32")."""
    global _compiled_kernels
    _compiled_kernels = enabled


def compiled_kernels_enabled() -> bool:
    """Whether the propagation uses its compiled kernels (see :func:`set_compiled_kernels`)."""
    if _compiled_kernels is not None:
        return _compiled_kernels
    return os.environ.get("MUTOMO_COMPILE", "") == "1"
