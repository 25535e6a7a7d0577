"""Capturing what every layer outputs, correctly and at close to the cost of a plain forward.

A forward hook that only keeps a reference to a module's output is wrong when a later op
writes into that tensor in place (torchvision's ResNets: ``bn1`` then ``ReLU(inplace=True)``,
and ``out += identity``). Cloning every output is right but costs 1.25-1.33x a plain forward.
So :func:`capture` keeps references, remembers each output's version counter, and after the
pass checks which ones were overwritten; those layers (and only those) are cloned inside the
hook from then on, the set learned once per model, and the pass is redone if it ever grows.
Values on the CPU leave as zero-copy numpy views.

:func:`layer_output` runs a model only up to one layer and stops there (with gradients, if the
caller enables them), for top-k retrieval and feature visualisation.

A module called more than once in a forward pass (torchvision's ``BasicBlock.relu`` runs after
``bn1`` and again after the residual add) is listed once per call: ``layer4.1.relu`` is its
first call, ``layer4.1.relu#2`` its second (:data:`CALL_SEP`, :func:`split_call`). Capture,
pickers and exports use these names like any other.

Over a dataset, :func:`capture_dataset` works batch by batch into preallocated arrays, optionally
float16 memory-maps on disk, so memory is bounded by one batch of the requested layers.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib.format import open_memmap
from torch import nn

from core.device import model_device
from core.hooks import CALL_SEP, forward_hooks, get_module, model_lock, split_call

INPUT = "(input)"
"""Pseudo-layer name for the model's input pixels ``[N, C, H, W]``."""

CLS_SUFFIX = " (CLS)"
"""``"<layer> (CLS)"`` names token 0 of a layer whose output is tokens ``[N, T, D]``: ``[N, D]``."""

_overwritten: weakref.WeakKeyDictionary[nn.Module, set[str]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class LayerInfo:
    """One module of a model, as a model summary lists it.

    Attributes:
        name: the ``named_modules()`` name.
        type: the module's class name.
        output_shape: one sample's output shape (no batch dimension), e.g. ``(16, 32, 32)``.
        params: parameters owned directly by this module (not its children).
        is_leaf: the module has no children.
    """

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    is_leaf: bool

    @property
    def spatial(self) -> bool:
        """The output is a stack of maps ``[C, H, W]``."""
        return len(self.output_shape) == 3


@dataclass(frozen=True)
class Capture:
    """Layer outputs for one batch.

    Attributes:
        arrays: layer name -> ``[N, *output_shape]`` float32 array (``INPUT``: the input).
        logits: ``[N, num_classes]`` model outputs.
    """

    arrays: dict[str, np.ndarray]
    logits: np.ndarray


def first_tensor(output: Any) -> torch.Tensor | None:
    """The tensor a module returned, or the first tensor of a returned tuple/list."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, list | tuple):
        return next((o for o in output if isinstance(o, torch.Tensor)), None)
    return None


def call_name(module: str, call: int) -> str:
    """The layer name of a module's ``call``-th call in a pass (1: the module's own name)."""
    return module if call == 1 else f"{module}{CALL_SEP}{call}"


def list_layers(model: nn.Module, input_shape: Sequence[int]) -> list[LayerInfo]:
    """Every module call with an output tensor, as a model summary: ``named_modules()`` order,
    a module's later calls (``name#2``, ...) right after its first.

    Args:
        model: any ``nn.Module``.
        input_shape: one input's shape ``(C, H, W)``.
    """
    modules = dict(model.named_modules())
    shapes: dict[str, list[tuple[int, ...]]] = {}

    def record(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            tensor = first_tensor(output)
            if tensor is not None:
                shapes.setdefault(name, []).append(tuple(tensor.shape[1:]))

        return hook

    x = torch.zeros(1, *input_shape, device=model_device(model))
    with forward_hooks(model, {n: record(n) for n in modules if n}), torch.no_grad():
        model(x)
    return [
        LayerInfo(
            name=call_name(n, call),
            type=type(m).__name__,
            output_shape=shape,
            params=sum(p.numel() for p in m.parameters(recurse=False)) if call == 1 else 0,
            is_leaf=not any(True for _ in m.children()),
        )
        for n, m in modules.items()
        for call, shape in enumerate(shapes.get(n, ()), start=1)
    ]


def _as_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach()
    if tensor.dtype != torch.float32:
        tensor = tensor.float()
    return tensor.cpu().numpy()


def _hooked_pass(
    model: nn.Module, x: torch.Tensor, names: list[str], overwritten: set[str]
) -> tuple[dict[str, tuple[torch.Tensor, int]], Any]:
    """One forward pass keeping ``(output, version at hook time)`` per layer.

    Outputs of layers in ``overwritten`` are cloned in the hook; the others are kept by reference.
    """
    seen: dict[str, tuple[torch.Tensor, int]] = {}
    wanted: dict[str, set[int]] = {}
    for name in names:
        module, call = split_call(name)
        wanted.setdefault(module, set()).add(call)

    def keep(module: str) -> Callable[[nn.Module, Any, Any], None]:
        calls = 0

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            nonlocal calls
            tensor = first_tensor(output)
            if tensor is None:
                return
            calls += 1
            name = call_name(module, calls)
            if calls not in wanted[module] or name in seen:
                return
            tensor = tensor.detach()
            if name in overwritten:
                tensor = tensor.clone()
            seen[name] = (tensor, tensor._version)

        return hook

    with forward_hooks(model, {m: keep(m) for m in wanted}), torch.no_grad():
        logits = model(x)
    return seen, logits


def capture(model: nn.Module, inputs: torch.Tensor | np.ndarray, layers: Sequence[str]) -> Capture:
    """Runs one forward pass and returns the outputs of ``layers``.

    Safe to call from several threads on one model: passes are serialised by the model's lock.

    Args:
        model: the model, in the mode it should run in (normally eval).
        inputs: ``[N, C, H, W]`` batch, on any device; moved to the model's device.
        layers: ``named_modules()`` names (``name#k``: the module's ``k``-th call),
            :data:`INPUT`, or ``<name> (CLS)`` (token 0 of a token layer, see :data:`CLS_SUFFIX`).

    Returns:
        A :class:`Capture` with ``[N, *shape]`` float32 arrays on the CPU.
    """
    x = torch.as_tensor(inputs).to(model_device(model), torch.float32)
    names = list(dict.fromkeys(n.removesuffix(CLS_SUFFIX) for n in layers if n != INPUT))
    with model_lock(model):
        overwritten = _overwritten.setdefault(model, set())
        while True:
            seen, logits = _hooked_pass(model, x, names, overwritten)
            changed = {n for n, (t, v) in seen.items() if t._version != v}
            if not changed:
                break
            overwritten |= changed
    missing = [n for n in names if n not in seen]
    if missing:
        raise ValueError(f"These layers produced no tensor in the forward pass: {missing}.")
    arrays = {}
    for name in dict.fromkeys(layers):
        if name == INPUT:
            arrays[name] = _as_numpy(x)
        elif name.endswith(CLS_SUFFIX):
            tokens = seen[name.removesuffix(CLS_SUFFIX)][0]
            if tokens.dim() != 3:
                raise ValueError(f"{name}: the layer outputs {tuple(tokens.shape)}, not tokens.")
            arrays[name] = _as_numpy(tokens[:, 0])
        else:
            arrays[name] = _as_numpy(seen[name][0])
    return Capture(arrays=arrays, logits=_as_numpy(first_tensor(logits)))


def capture_dataset(
    model: nn.Module,
    images: torch.Tensor | np.ndarray,
    layers: Sequence[str],
    *,
    batch_size: int = 256,
    float16: bool = False,
    out_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Capture:
    """Captures ``layers`` over many inputs, one batch at a time.

    Args:
        model: the model.
        images: ``[N, C, H, W]`` inputs (a CPU tensor or array; batches are moved to the model).
        layers: layer names, as for :func:`capture`.
        batch_size: inputs per forward pass; peak extra memory is one batch of ``layers``.
        float16: store activations as float16 (half the memory, ~3 significant digits).
        out_dir: if given, each layer is a memory-mapped ``.npy`` file in this folder.
        progress: called as ``progress(done, total)`` after each batch.

    Returns:
        A :class:`Capture` whose arrays are ``[N, *shape]`` (memory-maps when ``out_dir``).
    """
    n = len(images)
    dtype = np.float16 if float16 else np.float32
    arrays: dict[str, np.ndarray] = {}
    logits: np.ndarray | None = None
    for start in range(0, n, batch_size):
        batch = torch.as_tensor(images[start : start + batch_size])
        part = capture(model, batch, layers)
        if not arrays:
            for name, value in part.arrays.items():
                shape = (n, *value.shape[1:])
                if out_dir is None:
                    arrays[name] = np.empty(shape, dtype)
                else:
                    path = Path(out_dir) / f"{name.replace('/', '_')}.npy"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    arrays[name] = open_memmap(path, mode="w+", dtype=dtype, shape=shape)
            logits = np.empty((n, *part.logits.shape[1:]), np.float32)
        stop = start + len(batch)
        for name, value in part.arrays.items():
            arrays[name][start:stop] = value
        logits[start:stop] = part.logits
        if progress is not None:
            progress(stop, n)
    if logits is None:
        raise ValueError("No inputs to capture.")
    return Capture(arrays=arrays, logits=logits)


class _Reached(Exception):
    """Raised inside a hook to end a forward pass once the wanted layer has run."""


def layer_output(
    model: nn.Module, inputs: torch.Tensor, layer: str, *, before: bool = False
) -> torch.Tensor:
    """The output of ``layer`` for ``inputs``, running the model only up to that layer.

    The pass stops at the layer's call (the first, or the ``k``-th for ``name#k``), so later
    in-place ops cannot alter the result. Gradients flow if the caller has them enabled.

    Args:
        model: the model.
        inputs: ``[N, C, H, W]`` batch on the model's device.
        layer: a ``named_modules()`` name.
        before: return the layer's input instead (e.g. a ReLU's pre-activation; the layer
            itself does not run, so an in-place layer cannot overwrite it).

    Returns:
        The layer's output (or input) ``[N, *shape]``.
    """
    seen: list[torch.Tensor] = []
    _, call = split_call(layer)

    def keep(output: object) -> None:
        tensor = first_tensor(output)
        if tensor is not None:
            seen.append(tensor)
            if len(seen) == call:
                raise _Reached

    with model_lock(model):
        if before:
            handle = get_module(model, layer).register_forward_pre_hook(lambda _m, i: keep(i))
        else:
            handle = get_module(model, layer).register_forward_hook(lambda _m, _i, o: keep(o))
        try:
            model(inputs)
        except _Reached:
            pass
        finally:
            handle.remove()
    if len(seen) < call:
        raise ValueError(f"Layer {layer!r} produced no tensor in the forward pass.")
    return seen[call - 1]
