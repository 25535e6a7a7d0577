"""Top-activating examples per channel over a whole store: per-shard top-k, then a merge.

Each chunk (shard) keeps, per channel, its ``k`` highest scores and their sample ids
(:func:`shard_top_k`, the map); :func:`merge_top_k` (the reduce) ranks all shards' candidates
again. The global top-k of a channel is among the union of the shards' top-k, so the merge
equals a top-k over every sample at once, with the same tie rule as
:func:`core.feature_maps.top_examples.top_k`: higher score first, then lower sample id.
NaN scores rank last. A shard with fewer than ``k`` samples pads with id ``-1`` and score
``-inf``, which the merge drops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.extract.store import ActivationStore


def _rank(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the ``k`` best ``(score, id)`` of ``scores [C, M]``, ``ids [C, M]``."""
    key = np.nan_to_num(scores.astype(np.float64), nan=-np.inf)
    pad = max(0, k - key.shape[1])
    if pad:
        key = np.pad(key, ((0, 0), (0, pad)), constant_values=-np.inf)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
    tie = np.where(ids < 0, np.iinfo(np.int64).max, ids)
    order = np.lexsort((tie, -key), axis=1)[:, :k]
    return (
        np.take_along_axis(scores, order, 1).astype(np.float32),
        np.take_along_axis(ids, order, 1).astype(np.int64),
    )


def shard_top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The map step: one shard's top ``k`` samples per channel.

    Args:
        scores: ``[M, C]`` one score per sample and channel.
        ids: ``[M]`` the samples' ids.
        k: how many to keep.

    Returns:
        ``(values [C, k] float32, ids [C, k] int64)``, best first.
    """
    return _rank(scores.T, np.broadcast_to(ids, scores.T.shape), k)


def merge_top_k(
    values: np.ndarray, ids: np.ndarray, k: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The reduce step: the top ``k`` per channel over many shards' top-k.

    Args:
        values: ``[S, C, k']`` each shard's top scores.
        ids: ``[S, C, k']`` their sample ids.
        k: how many to keep (default ``k'``).

    Returns:
        ``(values [C, k] float32, ids [C, k] int64)``, best first; padding (id ``-1``) only
        when there are fewer than ``k`` samples in all.
    """
    s, c, width = values.shape
    flat_values = values.transpose(1, 0, 2).reshape(c, s * width)
    flat_ids = ids.transpose(1, 0, 2).reshape(c, s * width)
    return _rank(flat_values, flat_ids, k or width)


def store_top_k(
    store: ActivationStore, layer: str, k: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` samples per channel of ``layer`` over a whole store (every shard merged).

    Returns:
        ``(values [C, k] float32, sample ids [C, k] int64)``, best first.
    """
    index = store.layer(layer).index
    values = store.read(f"topk_{index}_values")
    ids = store.read(f"topk_{index}_ids")
    return merge_top_k(values, ids, k)
