"""Per-head statistics over many samples: how far each head looks, and how spread out it is.

Mean attention distance in pixels is the ViT paper's (Dosovitskiy et al. 2021, fig. 7);
entropy is in bits; both are averaged over the patch queries of each sample. Computed batch by
batch (:func:`head_statistics`, registered as ``attention.head_statistics``), so memory is
bounded by one batch of attention maps (:data:`BATCH_BYTES`).

What can go wrong: distance leaves out the attention on extra tokens (CLS, registers), which
``extra_share`` reports instead; a head that looks only at CLS has an undefined distance and
reads as 0 here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn

from core.analysis import Batch, register
from core.attention.layout import TokenLayout, token_layout
from core.attention.sites import forward_attention, is_compatible

BATCH_BYTES = 256 * 2**20
"""Attention maps kept per batch when statistics run over many samples."""


@dataclass(frozen=True)
class StatisticsOptions:
    """Options of :func:`head_statistics`."""

    batch_size: int = 256  # samples per pass (fewer when their maps exceed BATCH_BYTES)


@dataclass(frozen=True)
class HeadStatistics:
    """Per-head statistics over a set of samples, averaged over the patch queries of each.

    Attributes:
        distance: ``[N, layers, heads]`` mean attention distance in pixels: the distance from
            a query patch's centre to the key patches' centres, weighted by the attention on
            patches (renormalised to sum to 1 over patches).
        entropy: ``[N, layers, heads]`` entropy in bits of the attention rows (over all
            tokens); 0 is one token, ``log2(T)`` is uniform.
        extra_share: ``[N, layers, heads]`` attention mass on extra tokens (CLS, registers).
        layers: the attention modules' names.
        layout: the token layout.
        seconds: wall-clock time the computation took.
    """

    distance: np.ndarray
    entropy: np.ndarray
    extra_share: np.ndarray
    layers: tuple[str, ...]
    layout: TokenLayout
    seconds: float

    @property
    def max_entropy(self) -> float:
        """Entropy of uniform attention over all tokens, in bits."""
        return math.log2(self.layout.n_tokens)

    @property
    def uniform_distance(self) -> float:
        """Mean attention distance of a head that attends to every patch equally, in pixels."""
        uniform = np.full((self.layout.n_tokens,) * 2, 1 / self.layout.n_tokens)
        return float(mean_attention_distance(uniform, self.layout))


def mean_attention_distance(probs: np.ndarray, layout: TokenLayout) -> np.ndarray:
    """Mean attention distance in pixels per head (Dosovitskiy et al. 2021, fig. 7).

    For each patch query, the attention on patch keys is renormalised to sum to 1 and weights
    the distance between patch centres; the result is averaged over patch queries. Attention on
    extra tokens (see ``HeadStatistics.extra_share``) is left out.

    Args:
        probs: ``[..., T, T]`` attention probabilities.
        layout: the token layout.

    Returns:
        ``[...]`` distances in pixels.
    """
    centres = layout.patch_centres()
    distance = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    on_patches = probs[..., layout.patches, layout.patches]
    total = np.maximum(on_patches.sum(axis=-1), 1e-12)
    per_query = (on_patches * distance.astype(probs.dtype)).sum(axis=-1) / total
    return per_query.mean(axis=-1)


def attention_entropy(probs: np.ndarray, layout: TokenLayout) -> np.ndarray:
    """Entropy in bits of the attention rows of patch queries, averaged over them.

    Args:
        probs: ``[..., T, T]`` attention probabilities.
        layout: the token layout.

    Returns:
        ``[...]`` entropies in bits.
    """
    rows = probs[..., layout.patches, :]
    return -(rows * np.log2(np.maximum(rows, 1e-30))).sum(axis=-1).mean(axis=-1)


def extra_token_share(probs: np.ndarray, layout: TokenLayout) -> np.ndarray:
    """Attention mass of patch queries on extra tokens, averaged over them.

    Args:
        probs: ``[..., T, T]`` attention probabilities.
        layout: the token layout.

    Returns:
        ``[...]`` shares in [0, 1].
    """
    rows = probs[..., layout.patches, :]
    return (1 - rows[..., layout.patches].sum(axis=-1)).mean(axis=-1)


@register(
    "attention.head_statistics",
    family="attention",
    title="Head statistics over a split",
    options=StatisticsOptions,
    is_compatible=is_compatible,
)
def head_statistics(
    model: nn.Module,
    batch: Batch,
    options: StatisticsOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> HeadStatistics:
    """Mean attention distance, entropy and share on extra tokens of every head, per sample.

    Args:
        model: a vision transformer.
        batch: ``[N, C, H, W]`` images (e.g. a validation split).
        options: samples per forward pass.
        progress: called as ``progress(done, N)`` after each forward pass.

    Raises:
        NoAttentionError: the model has no attention layer.
        ValueError: no images.
    """
    images, n = batch.images, len(batch)
    if n == 0:
        raise ValueError("No images to compute head statistics over.")
    started = time.perf_counter()
    sites, first, _ = forward_attention(model, images[:1])
    layout = token_layout(model, first.shape[-1], tuple(images.shape[2:4]))
    size = max(1, min(n, options.batch_size, BATCH_BYTES // first.nbytes))
    parts: list[tuple[np.ndarray, ...]] = []
    for start in range(0, n, size):
        _, probs, _ = forward_attention(model, images[start : start + size])
        parts.append(
            (
                mean_attention_distance(probs, layout),
                attention_entropy(probs, layout),
                extra_token_share(probs, layout),
            )
        )
        if progress is not None:
            progress(min(start + size, n), n)
    distance, entropy, extra = (
        np.concatenate(p).astype(np.float32) for p in zip(*parts, strict=True)
    )
    return HeadStatistics(
        distance=distance,
        entropy=entropy,
        extra_share=extra,
        layers=tuple(s.name for s in sites),
        layout=layout,
        seconds=time.perf_counter() - started,
    )
