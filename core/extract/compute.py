"""What one chunk of an extraction computes, identically on every engine.

Both engines build the model with :func:`build_from_spec` (from the weights the driver read, so
a Ray worker needs no access to the run folder) and call :func:`chunk_outputs` on the same row
ranges with the same mini-batches, which is why their stores are equal bit for bit on the same
device. Activations are captured as float32 by :func:`core.activations.capture`, pooled (mean
over positions) and/or kept whole, then stored as float16; the per-channel top-k score is the
float32 peak over positions, like :func:`core.feature_maps.top_examples.channel_stats`'s max.

What can go wrong: float16 overflows to ``inf`` above 65,504 (activations that large are rare
and show as ``inf`` rather than wrapping); a layer that produces no tensor raises
``ValueError`` from the capture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from core.activations import capture
from core.extract.topk import shard_top_k
from core.models.runs import Normalization, apply_normalization
from core.models.zoo import build_model

SPATIAL = ("pooled", "full", "both")
"""How layers with positions (``[C, H, W]`` maps, ``[T, D]`` tokens) are stored."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a run's model anywhere: no paths.

    Attributes:
        arch: architecture name (see :func:`core.models.zoo.build_model`).
        input_shape: ``(C, H, W)``.
        num_classes: width of the logits.
        normalization: the run's input normalisation as JSON (``None``: none).
    """

    arch: str
    input_shape: tuple[int, int, int]
    num_classes: int
    normalization: dict[str, Any] | None


def build_from_spec(spec: ModelSpec, state: dict[str, torch.Tensor], device: str) -> nn.Module:
    """The run's model with ``state`` loaded, normalising its input, in eval mode on ``device``."""
    model = build_model(spec.arch, spec.input_shape, spec.num_classes)
    model.load_state_dict(state)
    apply_normalization(model, Normalization.from_json(spec.normalization))
    return model.to(device).eval()


def kinds_for(shape: Sequence[int], spatial: str) -> tuple[str, ...]:
    """Stored kinds of a layer whose one-sample output is ``shape``: flat layers are ``full``."""
    if len(shape) < 2:
        return ("full",)
    return {"pooled": ("pooled",), "full": ("full",), "both": ("pooled", "full")}[spatial]


def _pooled(x: np.ndarray) -> np.ndarray:
    """``[N, C, H, W]`` -> mean over ``H, W``; ``[N, T, D]`` -> over ``T``; ``[N, D]`` as is."""
    if x.ndim == 4:
        return x.mean(axis=(2, 3))
    return x.mean(axis=1) if x.ndim == 3 else x


def _peak(x: np.ndarray) -> np.ndarray:
    """Per sample and channel, the largest value over positions: ``[N, C]``."""
    if x.ndim == 4:
        return x.max(axis=(2, 3))
    return x.max(axis=1) if x.ndim == 3 else x


def chunk_outputs(
    model: nn.Module,
    images: np.ndarray,
    ids: np.ndarray,
    labels: np.ndarray,
    layers: Sequence[tuple[str, tuple[str, ...]]],
    *,
    batch_size: int,
    top_k: int,
) -> dict[str, np.ndarray]:
    """One chunk's arrays, as the store names them.

    Args:
        model: the model in eval mode.
        images: ``[M, C, H, W]`` float32 inputs of the chunk.
        ids: ``[M]`` their sample ids.
        labels: ``[M]`` their labels.
        layers: ``(layer name, stored kinds)`` in store order.
        batch_size: inputs per forward pass (peak memory: one batch of the layers).
        top_k: examples kept per channel for this shard.

    Returns:
        ``ids``, ``labels``, ``logits [M, classes] float32``, ``layer_<i>_<kind>`` float16 and
        ``topk_<i>_values [1, C, k] float32`` / ``topk_<i>_ids [1, C, k] int64``.
    """
    names = [name for name, _ in layers]
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(images), batch_size):
        cap = capture(model, images[start : start + batch_size], names)
        parts.setdefault("logits", []).append(cap.logits.astype(np.float32))
        for i, (name, kinds) in enumerate(layers):
            x = cap.arrays[name]
            if "pooled" in kinds:
                parts.setdefault(f"layer_{i}_pooled", []).append(_pooled(x).astype(np.float16))
            if "full" in kinds:
                parts.setdefault(f"layer_{i}_full", []).append(x.astype(np.float16))
            parts.setdefault(f"peak_{i}", []).append(_peak(x))
    out = {name: np.concatenate(p) for name, p in parts.items() if not name.startswith("peak_")}
    out["ids"] = np.asarray(ids, dtype=np.int64)
    out["labels"] = np.asarray(labels, dtype=np.int64)
    for i in range(len(layers)):
        values, top_ids = shard_top_k(np.concatenate(parts[f"peak_{i}"]), out["ids"], top_k)
        out[f"topk_{i}_values"], out[f"topk_{i}_ids"] = values[None], top_ids[None]
    return out
