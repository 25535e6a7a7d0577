"""Token norms: the L2 norm of every token after every block, and the high-norm outliers.

Darcet et al. (2024, "Vision Transformers Need Registers") found that large ViTs repurpose a few
background patch tokens as scratch space: their norms are many times the others', and the CLS
token's attention piles onto them, which makes attention maps blotchy. :func:`token_norms`
(registered as ``attention.token_norms``) measures every token's norm per block, flags patch
tokens whose norm is far above the layer's typical patch norm (:func:`outlier_threshold`), and
gives the CLS token's attention (mean over heads) with and without the outliers, renormalised.

What can go wrong: the threshold is robust (the larger of median + :data:`OUTLIER_MADS` median
absolute deviations and :data:`OUTLIER_RATIO` times the median of the batch's patch norms) but a
batch of one image has few patches to estimate it from; object patches often have somewhat larger
norms than background ones, which is why the ratio is required too (Darcet et al.'s artefacts are
about ten times the median); a small model usually has no outliers, and that is an answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn

from core.activations import capture
from core.analysis import Batch, register
from core.attention.layout import TokenLayout, token_layout
from core.attention.sites import forward_attention, is_compatible

OUTLIER_MADS = 6.0
"""A patch token is an outlier when its norm exceeds the median by this many MADs and..."""
OUTLIER_RATIO = 3.0
"""... is at least this many times the median."""


@dataclass(frozen=True)
class NormOptions:
    """Options of :func:`token_norms`."""

    mads: float = OUTLIER_MADS  # outlier threshold, in median absolute deviations
    ratio: float = OUTLIER_RATIO  # and in multiples of the median norm


@dataclass(frozen=True)
class TokenNorms:
    """Per-block token norms of a few images, outliers, and CLS attention with and without them.

    Attributes:
        norms: ``[N, layers, T]`` float32 L2 norm of every token at the output of each block.
        threshold: ``[layers]`` float32 outlier threshold on patch-token norms per block.
        outliers: ``[N, layers, T]`` bool, patch tokens above the threshold (extra tokens never).
        cls_attention: ``[N, layers, T]`` float32 the CLS token's attention in each block (mean
            over heads; each row sums to 1).
        cls_attention_clean: ``[N, layers, T]`` the same with the block's outlier tokens set to
            0 and the rest renormalised.
        layers: the blocks' names.
        layout: which tokens are patches.
    """

    norms: np.ndarray
    threshold: np.ndarray
    outliers: np.ndarray
    cls_attention: np.ndarray
    cls_attention_clean: np.ndarray
    layers: tuple[str, ...]
    layout: TokenLayout

    def caption(self, sample: int = 0) -> str:
        """How many outliers each block has for ``sample``, in one sentence."""
        counts = self.outliers[sample].sum(axis=-1)
        if not counts.any():
            return (
                "No high-norm outlier tokens in any block for this image (at least "
                f"{OUTLIER_RATIO:g}× the median patch norm and {OUTLIER_MADS:g} MADs above it): "
                "its attention maps are not distorted by register-like tokens."
            )
        parts = [f"`{layer}` {int(c)}" for layer, c in zip(self.layers, counts, strict=True) if c]
        return "High-norm outlier patches per block: " + ", ".join(parts) + "."


def outlier_threshold(
    patch_norms: np.ndarray, mads: float = OUTLIER_MADS, ratio: float = OUTLIER_RATIO
) -> np.ndarray:
    """``max(median + mads * MAD, ratio * median)`` of patch-token norms, per layer.

    Args:
        patch_norms: ``[N, layers, P]`` norms of the patch tokens.
        mads: how many median absolute deviations above the median.
        ratio: how many times the median, at least.

    Returns:
        ``[layers]`` thresholds.
    """
    per_layer = patch_norms.transpose(1, 0, 2).reshape(patch_norms.shape[1], -1)
    median = np.median(per_layer, axis=1)
    mad = np.median(np.abs(per_layer - median[:, None]), axis=1)
    spread = median + mads * np.maximum(mad, 1e-6 * np.maximum(median, 1e-12))
    return np.maximum(spread, ratio * median).astype(np.float32)


def without(attention: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """``attention [..., T]`` with the tokens ``drop [..., T]`` (bool) zeroed, rows renormalised."""
    kept = np.where(drop, 0.0, attention)
    return (kept / np.maximum(kept.sum(axis=-1, keepdims=True), 1e-30)).astype(np.float32)


@register(
    "attention.token_norms",
    family="attention",
    title="Token norms and outliers",
    options=NormOptions,
    is_compatible=is_compatible,
)
def token_norms(
    model: nn.Module,
    batch: Batch,
    options: NormOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> TokenNorms:
    """Every token's norm after every block of ``batch``'s images, with outliers flagged.

    Args:
        model: a vision transformer whose blocks output tokens ``[N, T, D]``.
        batch: ``[N, C, H, W]`` images (a few: memory is ``N * layers * T^2``).
        options: the outlier threshold in MADs and multiples of the median.
        progress: called once, as ``progress(N, N)``, when done.

    Raises:
        NoAttentionError: the model has no attention layer.
        ValueError: no images, or a block whose output is not tokens.
    """
    if len(batch) == 0:
        raise ValueError("No images to measure token norms on.")
    sites, probs, _ = forward_attention(model, batch.images)
    layout = token_layout(model, probs.shape[-1], tuple(batch.images.shape[2:4]))
    blocks = list(dict.fromkeys(s.block for s in sites))
    tokens = capture(model, batch.images, blocks).arrays
    bad = [b for b in blocks if tokens[b].ndim != 3]
    if bad:
        raise ValueError(f"Blocks {', '.join(bad)} do not output tokens [N, T, D].")
    norms = np.stack([np.linalg.norm(tokens[b], axis=-1) for b in blocks], axis=1)
    threshold = outlier_threshold(norms[..., layout.patches], options.mads, options.ratio)
    outliers = np.zeros(norms.shape, bool)
    outliers[..., layout.patches] = norms[..., layout.patches] > threshold[:, None]
    cls_attention = probs[:, :, :, 0, :].mean(axis=2).astype(np.float32)
    if progress is not None:
        progress(len(batch), len(batch))
    return TokenNorms(
        norms=norms.astype(np.float32),
        threshold=threshold,
        outliers=outliers,
        cls_attention=cls_attention,
        cls_attention_clean=without(cls_attention, outliers),
        layers=tuple(blocks),
        layout=layout,
    )
