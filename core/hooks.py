"""Forward hooks that cannot outlive their use, and one lock per model.

Every hook layerscope registers goes through :func:`forward_hooks`, which removes it in
``finally``: an exception inside the forward pass leaves the model as it was. Models are shared
between browser sessions, and a hook sees every forward pass through its module, whichever
thread runs it, so the context also holds :func:`model_lock` for the model. Code that runs
captum methods (which register hooks of their own) takes the same lock.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from torch import nn

ForwardHook = Callable[[nn.Module, tuple[Any, ...], Any], Any]

_locks: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that serialises hooked passes through ``model``."""
    with _locks_guard:
        lock = _locks.get(model)
        if lock is None:
            lock = _locks[model] = threading.RLock()
        return lock


CALL_SEP = "#"
"""``"<module>#<k>"`` names the ``k``-th call of a module called more than once in a pass."""


def split_call(name: str) -> tuple[str, int]:
    """``"layer4.1.relu#2"`` -> ``("layer4.1.relu", 2)``; a plain name is call 1.

    Raises:
        ValueError: the part after :data:`CALL_SEP` is not a call number >= 1.
    """
    module, sep, call = name.rpartition(CALL_SEP)
    if not sep:
        return name, 1
    if not call.isdigit() or int(call) < 1:
        raise ValueError(
            f"{name!r}: the part after {CALL_SEP!r} must be a call number (2, 3, ...)."
        )
    return module, int(call)


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` in ``named_modules()`` (``name#k``: the same module).

    Raises:
        KeyError: no such module; the message lists a few that exist.
    """
    name = split_call(name)[0]
    modules = dict(model.named_modules())
    if name not in modules:
        close = [n for n in modules if n and (name in n or n in name)][:5] or list(modules)[1:6]
        raise KeyError(f"The model has no layer {name!r}. Layers include: {', '.join(close)}.")
    return modules[name]


@contextmanager
def forward_hooks(model: nn.Module, hooks: Mapping[str, ForwardHook]) -> Iterator[None]:
    """Registers ``hooks`` (layer name -> forward hook) for the duration of the block.

    Holds the model's lock throughout, and removes every hook on exit, also after an error.
    """
    with model_lock(model):
        handles = []
        try:
            for name, hook in hooks.items():
                handles.append(get_module(model, name).register_forward_hook(hook))
            yield
        finally:
            for handle in handles:
                handle.remove()


def count_hooks(model: nn.Module) -> int:
    """How many forward, pre-forward and backward hooks are registered in ``model``."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )
