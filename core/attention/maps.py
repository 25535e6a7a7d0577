"""Attention maps of a few inputs: where each head of each layer looks, and what it adds up to.

:func:`attention_maps` (registered as ``attention.maps``) captures every head's probabilities
``[N, layers, heads, T, T]`` in one forward pass (see :mod:`core.attention.sites`) and rolls
them out through the residual connections (Abnar & Zuidema 2020), with the model's class
probabilities for the caption.

What can go wrong: memory is ``N * layers * heads * T^2`` floats, so this is for a few inputs;
statistics over a split go batch by batch (:mod:`core.attention.statistics`). Rollout assumes
one attention per block and a residual around it; it is a heuristic of information flow, not
an attribution of the class score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn

from core.analysis import Batch, register
from core.attention.layout import TokenLayout, token_layout
from core.attention.sites import forward_attention, is_compatible

ROLLOUT_RESIDUAL = 0.5
"""Weight of the identity in rollout's model of a residual connection (Abnar & Zuidema 2020)."""


@dataclass(frozen=True)
class MapsOptions:
    """Options of :func:`attention_maps`."""

    rollout_residual: float = ROLLOUT_RESIDUAL  # weight of the identity added to each layer


@dataclass(frozen=True)
class AttentionMaps:
    """Attention probabilities of every head of every layer for a batch, and their rollout.

    Attributes:
        probs: ``[N, layers, heads, T, T]`` float32; row ``q`` of a head is where query token
            ``q`` looks, and sums to 1.
        rollout: ``[N, layers, T, T]`` float32; row ``q`` of layer ``l`` is how much token
            ``q`` after block ``l`` draws on each input token (:func:`attention_rollout`).
        logits: ``[N, K]`` outputs of the same pass.
        probabilities: ``[N, K]`` softmax of ``logits``.
        layers: the attention modules' names, one per layer.
        blocks: the transformer blocks holding them.
        layout: which tokens are patches.
        rollout_residual: the identity's weight the rollout used.
    """

    probs: np.ndarray
    rollout: np.ndarray
    logits: np.ndarray
    probabilities: np.ndarray
    layers: tuple[str, ...]
    blocks: tuple[str, ...]
    layout: TokenLayout
    rollout_residual: float


def softmax(logits: np.ndarray) -> np.ndarray:
    """``[..., K]`` logits -> probabilities over the last axis (float32)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)


def attention_rollout(probs: np.ndarray, residual: float = ROLLOUT_RESIDUAL) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) up to each layer.

    Each layer's heads are averaged, the residual connection is modelled as
    ``residual * I + (1 - residual) * A``, rows are renormalised, and the layers are multiplied
    from the first: ``R_l = A_l R_{l-1}``.

    Args:
        probs: ``[..., layers, heads, T, T]`` attention probabilities.
        residual: weight of the identity.

    Returns:
        ``[..., layers, T, T]``: row ``q`` of layer ``l`` is how much token ``q`` after block
        ``l`` draws on each input token.
    """
    mixed = probs.astype(np.float64).mean(axis=-3)
    eye = np.eye(probs.shape[-1])
    mixed = residual * eye + (1 - residual) * mixed
    mixed /= mixed.sum(axis=-1, keepdims=True)
    out = np.empty_like(mixed)
    rolled = np.broadcast_to(eye, mixed.shape[:-3] + eye.shape)
    for layer in range(mixed.shape[-3]):
        rolled = mixed[..., layer, :, :] @ rolled
        out[..., layer, :, :] = rolled
    return out.astype(np.float32)


@register(
    "attention.maps",
    family="attention",
    title="Attention maps and rollout",
    options=MapsOptions,
    is_compatible=is_compatible,
)
def attention_maps(
    model: nn.Module,
    batch: Batch,
    options: MapsOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> AttentionMaps:
    """Every head's attention for each image of ``batch``, in one forward pass, and its rollout.

    Args:
        model: a vision transformer (see :func:`core.attention.sites.attention_sites`).
        batch: ``[N, C, H, W]`` images; keep ``N`` small (memory is ``N * layers * heads * T^2``).
        options: the rollout's residual weight.
        progress: called once, as ``progress(N, N)``, when done.

    Raises:
        NoAttentionError: the model has no attention layer.
        ValueError: the input is not a batch of images, or an attention layer is not run.
    """
    sites, probs, logits = forward_attention(model, batch.images)
    layout = token_layout(model, probs.shape[-1], tuple(batch.images.shape[2:4]))
    if progress is not None:
        progress(len(batch), len(batch))
    return AttentionMaps(
        probs=probs,
        rollout=attention_rollout(probs, options.rollout_residual),
        logits=logits,
        probabilities=softmax(logits),
        layers=tuple(s.name for s in sites),
        blocks=tuple(s.block for s in sites),
        layout=layout,
        rollout_residual=options.rollout_residual,
    )


def query_attention(maps: AttentionMaps, query: int, sample: int = 0) -> np.ndarray:
    """Where query token ``query`` looks, per layer and head, as pixel maps.

    Returns:
        ``[layers, heads, H, W]`` attention on each patch, spread over its pixels (NaN where no
        patch covers the image).
    """
    return maps.layout.to_pixels(maps.probs[sample, :, :, query, :])
