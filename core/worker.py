"""One worker process for heavy fits (UMAP, t-SNE), so they never hold the server's GIL.

A Streamlit server is one Python process. A numba UMAP fit holds its interpreter lock for
seconds, and meanwhile every other browser session waits, cached page or not. Work sent
through :func:`run` executes in a single worker process, one call at a time in arrival order
(a queue), with at most ``cores - 1`` threads, so the server keeps a core for torch and for
page reruns. Arguments and results are pickled: send arrays, not models.

What can go wrong: the worker dies (killed, out of memory); the call raises
``BrokenProcessPool`` and the next call starts a fresh worker.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

T = TypeVar("T")

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def worker_threads() -> int:
    """Threads the worker may use: all cores but one."""
    return max(1, (os.cpu_count() or 2) - 1)


def _limit_threads(threads: int) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    os.environ["NUMBA_NUM_THREADS"] = str(threads)


def _get_pool() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # The child imports the parent's __main__ (under Streamlit, app.py) as __mp_main__;
            # app.py guards its body with `if __name__ == "__main__"` for this.
            _pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_limit_threads,
                initargs=(worker_threads(),),
            )
        return _pool


def submit(fn: Callable[..., T], *args: object, **kwargs: object) -> Future[T]:
    """Queues ``fn(*args, **kwargs)`` in the worker process and returns its future at once.

    Poll the future (``result(timeout=...)``) to stay responsive while it runs; ``cancel()``
    removes it from the queue if it has not started (a started call runs to the end).
    ``fn`` must be a module-level function; arguments and result must pickle.
    """
    global _pool
    try:
        return _get_pool().submit(fn, *args, **kwargs)
    except BrokenProcessPool:  # the worker died since the last call: start a fresh one
        with _pool_lock:
            _pool = None
        return _get_pool().submit(fn, *args, **kwargs)


def run(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """``fn(*args, **kwargs)`` in the worker process; blocks until it is done.

    ``fn`` must be a module-level function; arguments and result must pickle.
    """
    global _pool
    try:
        return submit(fn, *args, **kwargs).result()
    except BrokenProcessPool:
        with _pool_lock:
            _pool = None
        raise
