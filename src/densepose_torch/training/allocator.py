"""Keep freed memory in the process during CPU training instead of handing it back to the system.

A training step allocates and frees the same activation and gradient buffers (megabytes each) every
iteration. glibc's malloc serves blocks above its mmap threshold with fresh pages and returns freed
memory at the top of the heap to the system, so each step faults every page of those buffers in
again (zero-filled by the kernel), which on a virtual machine is a noticeable share of the step.
Raising the mmap threshold to 32 MiB (the most glibc's adaptive threshold reaches by itself) and
the trim threshold to 1 GiB makes malloc reuse the same pages. On 2 cores,
`benchmarks/bench_training.py --size 256` (the default model, points) gained 4 % (0.39 against
0.40 s per iteration with `--system-malloc`); with training/pooling.py's faster RoIAlign, a
`densepose train` step on stage 3's data went from 0.68 to 0.53 s (docs/training.md, "On a CPU").
The process keeps up to the trim threshold of freed memory for later use.
"""
from __future__ import annotations

import ctypes

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 2**20  # the most glibc's own adaptive threshold rises to on 64-bit systems
_TRIM_THRESHOLD = 2**30
_TOP_PAD = 64 * 2**20


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed pages (see the module docstring); False where the C
    library is not glibc (macOS, musl, Windows), which is left as it is."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(parameter, value) == 1 for parameter, value in (
        (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), (_M_TOP_PAD, _TOP_PAD)))
