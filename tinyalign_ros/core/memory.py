"""Giving freed memory back to the system (nodes after each job or swap; the bench before
each RSS reading)."""
from __future__ import annotations

import gc


def release_memory() -> None:
    """Frees what Python no longer references and hands glibc's free heap pages back to the
    system. Without the trim, each training job or projector swap leaves its peak behind in
    malloc's arenas (one per thread that allocated), and a long-running node grows by
    100+ MB per Adapt job (make soak)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):   # not glibc: nothing to trim
        pass
