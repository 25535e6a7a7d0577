"""Does attention fall on the object? CLS attention and rollout against the object's area.

For images whose object pixels are known (``shapes`` records them: ``Batch.masks``), each patch
gets its object coverage ``c_p`` in ``[0, 1]`` (the share of its pixels inside the object,
:func:`patch_coverage`). A layer's CLS attention, averaged over heads and renormalised over the
patch tokens, puts ``sum_p a_p c_p`` on the object (:func:`object_share`); uniform attention
would put the object's area share ``mean_p c_p`` there, so a share well above the area share
means the layer looks at the object. :func:`object_attention` (registered as
``attention.object_attention``) does this for every layer's attention and its rollout, batch by
batch, and :func:`summarise` averages over the samples for a page.

What can go wrong: attention the CLS token pays to itself or to registers is left out by the
renormalisation (a layer that attends mostly to CLS is judged on the little left); images
without masks (another dataset, an upload) raise ``ValueError``; a mask at another resolution
than the images is area-averaged onto the patch grid, which is still exact for coverage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.analysis import Batch, register
from core.attention.layout import TokenLayout, token_layout
from core.attention.maps import ROLLOUT_RESIDUAL, attention_rollout
from core.attention.sites import forward_attention, is_compatible
from core.attention.statistics import BATCH_BYTES

NO_MASKS = (
    "Object attention needs each image's object mask; only the `shapes` dataset records them."
)


@dataclass(frozen=True)
class ObjectOptions:
    """Options of :func:`object_attention`."""

    batch_size: int = 256  # samples per pass (fewer when their maps exceed BATCH_BYTES)
    rollout_residual: float = ROLLOUT_RESIDUAL  # the rollout's identity weight


@dataclass(frozen=True)
class ObjectAttention:
    """Share of each layer's CLS attention and rollout on each image's object.

    Attributes:
        cls_share: ``[N, layers]`` share of the CLS token's attention (mean over heads,
            renormalised over patches) that falls on the object.
        rollout_share: ``[N, layers]`` the same for row CLS of the rollout up to the layer.
        area_share: ``[N]`` the object's share of the patch grid (what uniform attention gives).
        correct: ``[N]`` bool, the model classified the image correctly.
        layers: the attention modules' names.
        layout: the token layout.
    """

    cls_share: np.ndarray
    rollout_share: np.ndarray
    area_share: np.ndarray
    correct: np.ndarray
    layers: tuple[str, ...]
    layout: TokenLayout


@dataclass(frozen=True)
class ObjectSummary:
    """:class:`ObjectAttention` averaged over samples, per layer, for a chart and a caption.

    Attributes:
        layers: the attention modules' names.
        cls_share: ``[layers]`` mean share of CLS attention on the object.
        rollout_share: ``[layers]`` mean share of the rollout on the object.
        area_share: mean object share of the image (one number: it does not depend on depth).
        n: samples averaged.
    """

    layers: tuple[str, ...]
    cls_share: np.ndarray
    rollout_share: np.ndarray
    area_share: float
    n: int

    def caption(self) -> str:
        """One sentence on the deepest layer against the object's area (Markdown)."""
        last = len(self.layers) - 1
        best = int(np.argmax(self.cls_share))
        ratio = self.cls_share[best] / max(self.area_share, 1e-12)
        return (
            f"The object covers **{self.area_share:.0%}** of the image on average; the last "
            f"layer puts **{self.cls_share[last]:.0%}** of its CLS attention on it (rollout "
            f"{self.rollout_share[last]:.0%}), and `{self.layers[best]}` the most, "
            f"**{self.cls_share[best]:.0%}** ({ratio:.1f}× uniform), over n = {self.n:,} images."
        )


def patch_coverage(masks: np.ndarray, layout: TokenLayout) -> np.ndarray:
    """Share of each patch's pixels inside the object.

    Args:
        masks: ``[N, H', W']`` bool object masks (any resolution; area-averaged to the grid).
        layout: the token layout (its grid).

    Returns:
        ``[N, P]`` float64 coverage in ``[0, 1]``, patches row-major.
    """
    pooled = F.adaptive_avg_pool2d(torch.from_numpy(masks[:, None].astype(np.float64)), layout.grid)
    return pooled.reshape(len(masks), -1).numpy()


def object_share(attention: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """Share of attention on patches that falls on the object.

    Args:
        attention: ``[N, ..., P]`` attention over the patch tokens (any scale; renormalised).
        coverage: ``[N, P]`` object coverage of each patch (:func:`patch_coverage`).

    Returns:
        ``[N, ...]`` shares in ``[0, 1]``.
    """
    cov = coverage.reshape(len(coverage), *([1] * (attention.ndim - 2)), -1)
    total = np.maximum(attention.sum(axis=-1), 1e-30)
    return (attention * cov).sum(axis=-1) / total


@register(
    "attention.object_attention",
    family="attention",
    title="Attention on the object",
    options=ObjectOptions,
    is_compatible=is_compatible,
)
def object_attention(
    model: nn.Module,
    batch: Batch,
    options: ObjectOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> ObjectAttention:
    """Share of CLS attention and of rollout on each image's object, per layer.

    Args:
        model: a vision transformer whose token 0 is a CLS token.
        batch: ``[N, C, H, W]`` images with their ``masks`` (e.g. the validation split).
        options: samples per pass, the rollout's residual weight.
        progress: called as ``progress(done, N)`` after each forward pass.

    Raises:
        NoAttentionError: the model has no attention layer.
        ValueError: no images, no masks, or no CLS token.
    """
    n = len(batch)
    if n == 0:
        raise ValueError("No images to measure attention on.")
    if batch.masks is None:
        raise ValueError(NO_MASKS)
    sites, first, _ = forward_attention(model, batch.images[:1])
    layout = token_layout(model, first.shape[-1], tuple(batch.images.shape[2:4]))
    if not layout.has_cls:
        raise ValueError("This model's tokens start with a patch: it has no CLS token.")
    size = max(1, min(n, options.batch_size, BATCH_BYTES // first.nbytes))
    parts: list[tuple[np.ndarray, ...]] = []
    for start in range(0, n, size):
        stop = min(start + size, n)
        _, probs, logits = forward_attention(model, batch.images[start:stop])
        coverage = patch_coverage(batch.masks[start:stop], layout)
        cls_rows = probs[:, :, :, 0, layout.patches].mean(axis=2)
        rolled = attention_rollout(probs, options.rollout_residual)[:, :, 0, layout.patches]
        parts.append(
            (
                object_share(cls_rows, coverage),
                object_share(rolled, coverage),
                coverage.mean(axis=-1),
                logits.argmax(axis=1) == batch.labels[start:stop],
            )
        )
        if progress is not None:
            progress(stop, n)
    cls_share, rollout_share, area, correct = (np.concatenate(p) for p in zip(*parts, strict=True))
    return ObjectAttention(
        cls_share=cls_share.astype(np.float32),
        rollout_share=rollout_share.astype(np.float32),
        area_share=area.astype(np.float32),
        correct=correct,
        layers=tuple(s.name for s in sites),
        layout=layout,
    )


def summarise(result: ObjectAttention, correct_only: bool = False) -> ObjectSummary:
    """Per-layer means over the samples (only the correctly classified ones if asked)."""
    keep = result.correct if correct_only else np.ones(len(result.area_share), bool)
    return ObjectSummary(
        layers=result.layers,
        cls_share=result.cls_share[keep].mean(axis=0),
        rollout_share=result.rollout_share[keep].mean(axis=0),
        area_share=float(result.area_share[keep].mean()),
        n=int(keep.sum()),
    )
