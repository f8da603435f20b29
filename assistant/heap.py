"""Give the C heap's free memory back to the system between turns (glibc's `malloc_trim`).

A turn runs its speech and video stages on threads of its own, and glibc gives threads their own heaps ("arenas",
up to 8 per core). Native libraries (onnxruntime under Piper, llama.cpp, numpy) allocate and free their buffers
there; glibc keeps what is freed inside a heap for reuse, and returns it to the system only from the top of a heap
above a threshold that rises with each large free. Over a long session that kept memory spread over several
heaps, and the process's RSS rose by the largest sentence's buffers per heap. `malloc_trim(0)` returns the free
pages of every heap (glibc >= 2.8 also releases whole free pages inside a heap, not only at its top). Dask gives
its workers the same remedy for the same symptom.

Needs nothing but the standard library; on a C library without `malloc_trim` (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import cache
from typing import Any

log = logging.getLogger(__name__)


@cache
def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system. True when some memory was released; False when none was
    (or this C library cannot). Takes a few milliseconds: call it between turns, not inside one."""
    trim = _malloc_trim()
    if trim is None:
        return False
    return bool(trim(0))
