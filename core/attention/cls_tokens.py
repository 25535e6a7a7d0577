"""The CLS token after every transformer block: a ViT's summary of the image, block by block.

:func:`cls_tokens` (registered as ``attention.cls_tokens``) keeps only token 0 of each block's
output, so memory is ``N * blocks * dim`` whatever the token count. The same pseudo-layers
(``"<block> (CLS)"``, :func:`core.attention.sites.cls_layer_name`) can be captured by
:func:`core.activations.capture`, which is how the projections read them.

What can go wrong: a model whose token 0 is a patch (no CLS token) raises ``ValueError``
rather than returning a patch's embedding under the CLS name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn

from core.activations import capture_dataset
from core.analysis import Batch, register
from core.attention.layout import token_layout
from core.attention.sites import cls_layers, forward_attention, is_compatible


@dataclass(frozen=True)
class ClsOptions:
    """Options of :func:`cls_tokens`."""

    batch_size: int = 256  # samples per forward pass


@dataclass(frozen=True)
class ClsTokens:
    """The CLS token at the output of every block.

    Attributes:
        tokens: ``[N, blocks, dim]`` float32, blocks shallow to deep.
        layers: ``"<block> (CLS)"`` per block.
        logits: ``[N, K]`` outputs of the same passes.
    """

    tokens: np.ndarray
    layers: tuple[str, ...]
    logits: np.ndarray


@register(
    "attention.cls_tokens",
    family="attention",
    title="CLS token per block",
    options=ClsOptions,
    is_compatible=is_compatible,
)
def cls_tokens(
    model: nn.Module,
    batch: Batch,
    options: ClsOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> ClsTokens:
    """The CLS token at the output of every transformer block, for each image of ``batch``.

    Args:
        model: a vision transformer whose token 0 is a CLS token.
        batch: ``[N, C, H, W]`` images.
        options: samples per forward pass.
        progress: called as ``progress(done, N)`` after each batch.

    Raises:
        NoAttentionError: the model has no attention layer.
        ValueError: the model's tokens have no CLS token, or there are no images.
    """
    if len(batch) == 0:
        raise ValueError("No images to take CLS tokens of.")
    _, first, _ = forward_attention(model, batch.images[:1])
    if not token_layout(model, first.shape[-1], tuple(batch.images.shape[2:4])).has_cls:
        raise ValueError("This model's tokens start with a patch: it has no CLS token.")
    names = cls_layers(model)
    captured = capture_dataset(
        model, batch.images, names, batch_size=options.batch_size, progress=progress
    )
    return ClsTokens(
        tokens=np.stack([captured.arrays[name] for name in names], axis=1),
        layers=tuple(names),
        logits=captured.logits,
    )
