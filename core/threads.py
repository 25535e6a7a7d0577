"""How many threads a fit may use, in one place.

Why: scikit-learn, numpy's BLAS and numba would each take every core, while the app also runs
torch forward passes and serves pages. Fits hold :func:`limited_threads`; threadpoolctl's
limits are process-wide, so such blocks are serialised by one lock (a second fit waits).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

_blas_lock = threading.Lock()


def fit_threads() -> int:
    """Threads a fit may use: all cores but one, so a torch forward pass keeps a core."""
    return max(1, (os.cpu_count() or 2) - 1)


def threads_per_process(processes: int) -> int:
    """Torch threads for each of ``processes`` server processes sharing the machine: its cores
    split between them, so their forward passes do not oversubscribe the cores."""
    return max(1, (os.cpu_count() or 2) // max(1, processes))


@contextmanager
def limited_threads() -> Iterator[None]:
    """Caps BLAS/OpenMP threads at :func:`fit_threads` for a scikit-learn or numpy fit.

    threadpoolctl's limits are process-wide, so the block is serialised by a lock.
    """
    with _blas_lock, threadpool_limits(limits=fit_threads()):
        yield
