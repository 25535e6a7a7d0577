"""The model at each checkpoint, and one capture of pooled features per checkpoint.

Why: the CKA grid, the probe grid, the aligned projection and the learning events all need
every layer's output (or the logits) at every checkpoint on the same samples. One forward pass
per checkpoint captures all of them; spatial outputs are average-pooled to at most
:data:`POOL` x :data:`POOL` per channel (token outputs: mean over tokens), so a layer is a few
hundred numbers per sample and a grid over ~10 checkpoints, ~12 layers and 1,000 samples fits
in seconds on a laptop CPU.

What can go wrong: a checkpoint for another architecture (``load_state_dict`` raises); pooled
features see less than the full map (a representation differing only in where things are,
within a pooling cell, looks the same).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.activations import INPUT, capture
from core.analysis import Batch
from core.projections.report_card import report_layers

POOL = 2
"""Spatial outputs are average-pooled to at most ``POOL x POOL`` cells per channel."""
BATCH_SIZE = 256
"""Samples per forward pass."""

State = Mapping[str, torch.Tensor]
Progress = Callable[[int, int], None]


def at_checkpoints(model: nn.Module, checkpoints: Sequence[State]) -> Iterator[nn.Module]:
    """Yields ``model`` with each checkpoint's weights in turn (a copy; ``model`` is untouched).

    With no checkpoints, yields ``model`` itself once.
    """
    if not checkpoints:
        yield model
        return
    scratch = copy.deepcopy(model).eval()
    for state in checkpoints:
        scratch.load_state_dict(state)
        yield scratch


def pooled(x: np.ndarray) -> np.ndarray:
    """``[N, D]`` rows of a layer output ``x [N, ...]``: maps pooled to ``POOL x POOL``,
    tokens ``[N, T, D]`` averaged over tokens, vectors as they are."""
    if x.ndim == 4:
        t = F.adaptive_avg_pool2d(
            torch.from_numpy(x), (min(POOL, x.shape[2]), min(POOL, x.shape[3]))
        )
        return t.reshape(len(x), -1).numpy()
    if x.ndim == 3:
        return x.mean(axis=1)
    return x.reshape(len(x), -1)


def dynamics_layers(model: nn.Module, input_shape: Sequence[int]) -> list[str]:
    """The layers a grid covers: the report card's ladder, shallow to deep, without the input."""
    return [name for name in report_layers(model, tuple(input_shape)) if name != INPUT]


@dataclass(frozen=True)
class CheckpointCapture:
    """Pooled features and logits of the same samples at every checkpoint.

    Attributes:
        layers: the layers captured, shallow to deep.
        features: ``features[t][layer]`` is ``[N, D_layer]`` float32 at checkpoint ``t``.
        logits: ``[T, N, K]`` float32.
    """

    layers: tuple[str, ...]
    features: tuple[dict[str, np.ndarray], ...]
    logits: np.ndarray


def capture_checkpoints(
    model: nn.Module,
    batch: Batch,
    checkpoints: Sequence[State],
    layers: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> CheckpointCapture:
    """Captures ``layers`` (default :func:`dynamics_layers`) at every checkpoint, pooled.

    Args:
        model: the run's model (its architecture; its weights count only without checkpoints).
        batch: ``[N, C, H, W]`` images.
        checkpoints: state dicts in training order (empty: the model's own weights).
        layers: layer names (``[]``: logits only).
        progress: ``progress(done, total)`` after each checkpoint.
    """
    names = dynamics_layers(model, batch.images.shape[1:]) if layers is None else list(layers)
    total = max(1, len(checkpoints))
    features, logits = [], []
    for t, net in enumerate(at_checkpoints(model, checkpoints)):
        parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
        out = []
        for start in range(0, len(batch), BATCH_SIZE):
            part = capture(net, batch.images[start : start + BATCH_SIZE], names)
            for n in names:
                parts[n].append(pooled(part.arrays[n]))
            out.append(part.logits)
        features.append({n: np.concatenate(v).astype(np.float32) for n, v in parts.items()})
        logits.append(np.concatenate(out))
        if progress is not None:
            progress(t + 1, total)
    return CheckpointCapture(tuple(names), tuple(features), np.stack(logits).astype(np.float32))
