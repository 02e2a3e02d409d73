"""glibc malloc settings for CPU inference and training (a Predictor and `densepose train` make them).

A DensePose R-CNN allocates and frees tensors of tens of megabytes in every layer (an 800 px
image's stride-4 feature map alone is 41 MB in float32). glibc serves blocks that large with
mmap and returns them with munmap on free, so the next layer's tensor arrives as fresh pages the
kernel must fault in and zero: on a 2-core machine that cost a third of the exact path's time
(2.6-2.9 s against 1.6 s per 800 px photo, measured with benchmarks/bench_inference.py). Keeping
large blocks on the heap and not trimming it lets each inference reuse the previous one's pages.

The price: the process keeps the memory of its largest inference until the free block at the top
of the heap exceeds 1 GiB. The settings are process-wide; they are left alone when the user has
chosen malloc settings through the environment (MALLOC_MMAP_MAX_, MALLOC_TRIM_THRESHOLD_) or
another allocator through LD_PRELOAD (jemalloc, tcmalloc), and outside Linux with glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform

# mallopt parameters, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 1 << 30
USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


@functools.cache
def keep_freed_memory() -> bool:
    """Serve large blocks from glibc's heap and keep freed memory for reuse (once per process).
    Returns whether the settings were applied."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(os.environ.get(name) for name in USER_SETTINGS) or "malloc" in os.environ.get("LD_PRELOAD", ""):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False
