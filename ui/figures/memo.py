"""Figures built once per process, shared by every session that shows the same data.

Building a plotly figure validates every property it sets: 20–400 ms for the pages' larger
figures (a grid of attribution maps is the slowest), under the one interpreter lock all
sessions share. Every rerun of every student's page built its figures again, and in a
classroom those milliseconds queue. :func:`figure` keys a figure by its builder and the
content of its arguments (arrays by their bytes), so a rerun, or another session on the same
data, reuses the figure and pays only for ``st.plotly_chart``'s copy to JSON.

What can go wrong: a cached figure is shared, so nobody may change it after it is built (the
pages only pass figures to ``st.plotly_chart``, which copies them). An argument whose content
cannot be keyed (an arbitrary object, a callable) is not cached: the figure is built every
time, never served from another call's entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import plotly.graph_objects as go

MAX_FIGURES = 256
"""Figures kept per process (least recently used dropped first): a few hundred kB each."""

_figures: OrderedDict[bytes, go.Figure] = OrderedDict()
_lock = threading.Lock()


_PLAIN = frozenset({bool, int, float, str, type(None)})
"""Types whose ``repr`` is their whole content."""


class _Unkeyable(Exception):
    """An argument whose content :func:`content_key` cannot describe."""


def _update(h: Any, value: Any) -> None:
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        h.update(f"a{array.dtype.str}{array.shape}".encode())
        h.update(array.view(np.uint8).reshape(-1).data if array.size else b"")
    elif value is None or isinstance(value, (bool, int, float, str, bytes, np.generic)):
        h.update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, (list, tuple)) and all(type(v) in _PLAIN for v in value):
        h.update(f"{type(value).__name__}:{value!r};".encode())  # hover texts: thousands of str
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__}{len(value)}[".encode())
        for item in value:
            _update(h, item)
        h.update(b"]")
    elif isinstance(value, dict):
        h.update(f"d{len(value)}{{".encode())
        for k in sorted(value, key=repr):
            _update(h, k)
            _update(h, value[k])
        h.update(b"}")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(f"D{type(value).__module__}.{type(value).__qualname__}(".encode())
        for field in dataclasses.fields(value):
            _update(h, getattr(value, field.name))
        h.update(b")")
    else:
        raise _Unkeyable(type(value).__name__)


def content_key(build: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> bytes | None:
    """A digest of ``build`` and the content of its arguments; ``None`` when one cannot be
    keyed (then the figure must not be cached)."""
    h = hashlib.blake2b(f"{build.__module__}.{build.__qualname__}".encode(), digest_size=20)
    try:
        _update(h, args)
        _update(h, kwargs)
    except _Unkeyable:
        return None
    return h.digest()


def figure(build: Callable[..., go.Figure], *args: Any, **kwargs: Any) -> go.Figure:
    """``build(*args, **kwargs)``, reused while an equal call's figure is kept. Read-only."""
    key = content_key(build, args, kwargs)
    if key is None:
        return build(*args, **kwargs)
    with _lock:
        if (cached := _figures.get(key)) is not None:
            _figures.move_to_end(key)
            return cached
    built = build(*args, **kwargs)  # outside the lock: two sessions may both build it once
    with _lock:
        _figures[key] = built
        while len(_figures) > MAX_FIGURES:
            _figures.popitem(last=False)
    return built
